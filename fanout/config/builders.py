"""Builders: the values read from one section (see ``tagtable``) → its dataclass.

Most sections are plain keyword sets (``tagtable.keywords``); the ones here carry a rule
worth naming: a required element, a 2.4.4 default that depends on another element, or a
section that yields more than one object.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from .fleet import check_tls
from .converters import boolean
from .errors import ConfigError
from .hosting import keep_directories
from .model import (
    DEFAULT_PORT, Authentication, Config, HttpHeader, ListenSocket, MasterConfig, MountConfig,
    RelayConfig,
)
from .tagtable import Node, ReadContext, Values, text_reader

_read_boolean = text_reader(boolean)


def require(values: Values, key: str, path: str, expected: str) -> Any:
    """Return ``values[key]``, or raise ``ConfigError`` for the missing element at ``path``."""
    if key not in values:
        raise ConfigError(path, None, expected)
    return values[key]


def as_is(values: Values, path: str, ctx: ReadContext) -> Values:
    """For a ``MERGE`` section: its values belong to the parent element."""
    return values


def read_relays_on_demand(node: Node, path: str, ctx: ReadContext) -> bool:
    """Read ``<relays-on-demand>`` and remember it for the ``<relay>`` blocks that follow."""
    ctx.relays_on_demand = _read_boolean(node, path, ctx)
    return ctx.relays_on_demand


def build_listen_socket(values: Values, path: str, ctx: ReadContext) -> tuple[ListenSocket, ...]:
    """One ``<listen-socket>``, plus the port+1 Shoutcast socket its shoutcast-mount implies."""
    socket = ListenSocket(**values)
    if socket.shoutcast_mount is None or socket.shoutcast_compat:
        return (socket,)
    # 2.4.4: a shoutcast-mount on a normal socket also opens port+1 for Shoutcast sources,
    # which send their password there (the Shoutcast v1 convention).
    if socket.port in (0, 65535):
        raise ConfigError(f"{path}/port", str(socket.port),
                          "a fixed port below 65535, as port + 1 opens too")
    return (socket, replace(socket, port=socket.port + 1, shoutcast_compat=True))


def build_header(values: Values, path: str, ctx: ReadContext) -> HttpHeader:
    name = require(values, "name", f"{path}/@name", "a name attribute")
    value = require(values, "value", f"{path}/@value", "a value attribute")
    return HttpHeader(name, value, values.get("status"))


def build_headers(values: Values, path: str, ctx: ReadContext) -> tuple[HttpHeader, ...]:
    return tuple(values.get("headers", ()))


def build_mount(values: Values, path: str, ctx: ReadContext) -> MountConfig:
    """One ``<mount>``: a normal block must name its mount (a pattern), a default one need not."""
    is_default = values.pop("type", "normal") == "default"
    if not is_default:
        require(values, "mount_name", f"{path}/mount-name", "a mount name starting with '/'")
    return MountConfig(is_default=is_default, **values)


def build_redirect(values: Values, path: str, ctx: ReadContext) -> tuple[str, int]:
    """KH ``<redirect>``: a static redirect target; its port defaults to 8000."""
    host = require(values, "host", f"{path}/host", "a host name or address")
    return host, values.get("port", DEFAULT_PORT)


# ---- the root element -----------------------------------------------------------------

# Config fields taken from the root's values as they are; build_config makes the others.
_DIRECT_FIELDS = frozenset(field.name for field in fields(Config)) - {
    "listen_sockets", "authentication", "mounts", "default_mount", "relays", "master",
    "warnings", "source", "directories",
}
# MasterConfig field ← root value, for those given (KH <master> children use the same keys).
_MASTER_KEYS = {
    "server": "master_server", "port": "master_server_port", "username": "master_username",
    "password": "master_password", "update_interval": "master_update_interval",
    "redirect": "master_redirect", "ssl_port": "master_ssl_port",
}


def build_config(values: Values, ctx: ReadContext, source: str) -> Config:
    """``<icecast>`` → ``Config``: the root's direct values plus the sections built here."""
    mounts, default_mount = _split_mounts(values.get("mount_blocks", ()), ctx)
    built: Values = {
        "authentication": _authentication(values),
        "mounts": mounts,
        "default_mount": default_mount,
        "relays": _relays(values),
        "master": _master(values, ctx),
        "directories": keep_directories(values.get("directory_blocks", ()), ctx),
    }
    sockets = _listen_sockets(values, ctx)
    if sockets:  # else Config's default socket
        built["listen_sockets"] = sockets
    direct = {key: value for key, value in values.items() if key in _DIRECT_FIELDS}
    config = Config(**direct, **built, warnings=tuple(ctx.warnings), source=source)
    check_tls(config)
    return config


def _authentication(values: Values) -> Authentication:
    """``<authentication>``, with the pre-2.0 top-level ``<source-password>`` as a fallback."""
    auth = values.get("authentication") or Authentication()
    legacy = values.get("legacy_source_password")
    if legacy is not None and auth.source_password is None:
        auth = replace(auth, source_password=legacy)
    return auth


def _split_mounts(
    blocks: tuple[MountConfig, ...], ctx: ReadContext
) -> tuple[tuple[MountConfig, ...], MountConfig | None]:
    """Normal blocks in file order, and the first default block (2.4.4 uses only that one)."""
    defaults = [(index, block) for index, block in enumerate(blocks, 1) if block.is_default]
    for index, _ in defaults[1:]:
        ctx.warn(f"icecast/mount[{index}]",
                 'a second type="default" mount is ignored; the first one applies')
    normal = tuple(block for block in blocks if not block.is_default)
    return normal, defaults[0][1] if defaults else None


def _relays(values: Values) -> tuple[RelayConfig, ...]:
    """Relays are built last: their retry delay is <master-update-interval>, wherever it is."""
    delay = {}
    if "master_update_interval" in values:
        delay = {"retry_delay": values["master_update_interval"]}
    return tuple(RelayConfig(**{**delay, **draft}) for draft in values.get("relay_drafts", ()))


def _master(values: Values, ctx: ReadContext) -> MasterConfig | None:
    """2.4.4 polls a master only when master-server and a non-zero port are both set."""
    if "master_server" not in values or not values.get("master_server_port"):
        _warn_half_master(values, ctx)
        return None
    if "master_password" not in values:
        ctx.warn("icecast/master-password", "missing: the master will refuse our stream-list polls")
    given = {field: values[key] for field, key in _MASTER_KEYS.items() if key in values}
    # Master relays read the global flag when they start (final value), KH's own wins.
    for key in ("relays_on_demand", "master_on_demand"):
        if key in values:
            given["on_demand"] = values[key]
    return MasterConfig(**given)


def _warn_half_master(values: Values, ctx: ReadContext) -> None:
    # An explicit port of 0 is the documented way to switch polling off: no warning then.
    if "master_server" in values and "master_server_port" not in values:
        ctx.warn("icecast/master-server-port", "missing: master relaying stays off")
    elif "master_server" not in values and values.get("master_server_port"):
        ctx.warn("icecast/master-server", "missing: master relaying stays off")


def _listen_sockets(values: Values, ctx: ReadContext) -> tuple[ListenSocket, ...]:
    """The <listen-socket>s in file order, after the legacy top-level <port> if given."""
    blocks = tuple(socket for group in values.get("socket_blocks", ()) for socket in group)
    legacy = {key: values[f"legacy_{key}"] for key in ("port", "bind_address")
              if f"legacy_{key}" in values}
    if "port" in legacy or (legacy and not blocks):
        return (ListenSocket(**legacy),) + blocks
    if legacy:
        ctx.warn("icecast/bind-address",
                 "ignored: without <port> it only applies when there is no <listen-socket>")
    return blocks
