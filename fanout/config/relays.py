"""``<relay>`` in its three forms → ``RelayConfig`` keywords.

2.4 flat form: ``server``/``port``/``mount`` in the relay itself. Icecast-KH: any number of
``<host>`` (alias ``<master>``) children, tried by ``priority``. Icecast 2.5: ``<upstream
type="normal">`` children tried in file order, a ``type="default"`` one filling what they
leave unset. Each form becomes a list of ``Upstream``s; the first is the relay's
server/port/mount, the rest its ``backups`` (PROTOCOL.md §3.1, §3.11).
"""

from __future__ import annotations

from dataclasses import dataclass

from .builders import require
from .model import DEFAULT_RELAY_MOUNT, DEFAULT_RELAY_SERVER, DEFAULT_UPSTREAM_PORT
from .tagtable import ReadContext, Values


@dataclass(frozen=True, slots=True)
class Upstream:
    """One place a relay can pull from, whichever of the three forms described it."""

    server: str
    port: int
    mount: str
    priority: int | None = None  # KH: 1 is tried first; None: the previous host's + 1
    username: str | None = None  # 2.5 <upstream> may carry its own credentials
    password: str | None = None
    relay_shoutcast_metadata: bool | None = None
    tls: bool = False  # KH <ssl>/<tls>: reached over https (issue 12)


# Relay settings copied into RelayConfig when the XML gives them.
_RELAY_OPTIONAL = (
    "local_mount", "username", "password", "relay_shoutcast_metadata",
    "retry_delay", "run_on", "enabled",
)
_NO_PORT = "an integer from 1 to 65535 (2.4.4 has no default relay port)"


def build_relay_host(values: Values, path: str, ctx: ReadContext) -> Upstream:
    """KH ``<host>``/``<master>`` inside ``<relay>``."""
    port = require(values, "port", f"{path}/port", _NO_PORT)
    return Upstream(
        values.get("server", DEFAULT_RELAY_SERVER), port,
        values.get("mount", DEFAULT_RELAY_MOUNT), values.get("priority"),
        tls=values.get("ssl", False),
    )


def build_upstream(values: Values, path: str, ctx: ReadContext) -> tuple[str, Values]:
    """2.5 ``<upstream type=…>``: kept raw, as a default one fills the normal ones."""
    return values.pop("type", "normal"), values


def build_relay(values: Values, path: str, ctx: ReadContext) -> Values:
    """One ``<relay>`` → ``RelayConfig`` keywords (``build_config`` adds the retry delay)."""
    first, *backups = _upstreams(values, path)
    relay: Values = {
        "server": first.server, "port": first.port, "mount": first.mount,
        "backups": tuple((host.server, host.port, host.mount) for host in backups),
        "tls_upstreams": tuple((host.server, host.port) for host in (first, *backups) if host.tls),
        "on_demand": values.get("on_demand", ctx.relays_on_demand),
    }
    relay.update((key, values[key]) for key in _RELAY_OPTIONAL if key in values)
    for key in ("username", "password", "relay_shoutcast_metadata"):
        if key not in relay and getattr(first, key) is not None:
            relay[key] = getattr(first, key)
    return relay


def _upstreams(values: Values, path: str) -> list[Upstream]:
    """Every upstream of a relay, in the order to try them."""
    hosts = _by_priority(values.get("hosts", ()))
    upstreams = _from_2_5_upstreams(values.get("upstreams", ()))
    has_flat = "server" in values or "port" in values
    flat = [_flat_upstream(values, path)] if has_flat or not (hosts or upstreams) else []
    return flat + hosts + upstreams


def _flat_upstream(values: Values, path: str) -> Upstream:
    port = require(values, "port", f"{path}/port", _NO_PORT)
    server = values.get("server", DEFAULT_RELAY_SERVER)
    return Upstream(server, port, values.get("mount", DEFAULT_RELAY_MOUNT))


def _by_priority(hosts: tuple[Upstream, ...]) -> list[Upstream]:
    """KH order: ascending priority, an unset one being the previous host's + 1."""
    ranked: list[tuple[int, Upstream]] = []
    previous = 0
    for host in hosts:
        previous = host.priority if host.priority is not None else previous + 1
        ranked.append((previous, host))
    return [host for _, host in sorted(ranked, key=lambda pair: pair[0])]


def _from_2_5_upstreams(upstreams: tuple[tuple[str, Values], ...]) -> list[Upstream]:
    """2.5: ``type="default"`` values fill what each normal upstream leaves unset."""
    defaults: Values = {}
    for kind, values in upstreams:
        if kind == "default":
            defaults = {**defaults, **values}
    normal = [values for kind, values in upstreams if kind == "normal"]
    if not normal and defaults:  # a lone default upstream is the upstream
        normal = [{}]
    return [_upstream_2_5({**defaults, **values}) for values in normal]


def _upstream_2_5(values: Values) -> Upstream:
    return Upstream(
        values.get("server", DEFAULT_RELAY_SERVER), values.get("port", DEFAULT_UPSTREAM_PORT),
        values.get("mount", DEFAULT_RELAY_MOUNT), None, values.get("username"),
        values.get("password"), values.get("relay_shoutcast_metadata"),
    )
