"""``<mount><authentication type="htpasswd|url">`` → ``HtpasswdAuth`` / ``UrlAuth``.

2.4.4 reads the ``type`` attribute and the ``<option name= value=/>`` children; each
authenticator picks the option names it knows and a repeated option's last value wins
(``src/auth.c``, ``auth_htpasswd.c``, ``auth_url.c``). Where 2.4.4 is lax we are strict,
because its laxness opens the mount: a missing or unknown type (2.4.4 logs it and then
serves the mount to everyone) and an htpasswd block without a filename are ConfigErrors.
Unknown option names are warned with their path (a misspelt ``listener_add`` would let
everyone in); the url options we do not act on (``mount_add``, ``mount_remove``,
``stream_auth``) are warned as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .builders import require
from .converters import (
    POSITIVE_SECONDS, BadValue, Converter, boolean, header_names, header_value, http_url, string,
)
from .errors import ConfigError
from .mounts import HtpasswdAuth, ListenerAuth, UrlAuth
from .tagtable import ReadContext, Values

# Option name → (field, converter), per authenticator type.
OPTIONS: dict[str, dict[str, tuple[str, Converter[Any]]]] = {
    "htpasswd": {
        "filename": ("filename", string),
        "allow_duplicate_users": ("allow_duplicate_users", boolean),
    },
    "url": {
        "listener_add": ("listener_add", http_url),
        "listener_remove": ("listener_remove", http_url),
        "username": ("username", string),
        "password": ("password", string),
        "auth_header": ("auth_header", string),
        "timelimit_header": ("timelimit_header", string),
        "headers": ("headers", header_names),
        "header_prefix": ("header_prefix", header_value),
        "timeout": ("timeout", POSITIVE_SECONDS),  # Icecast-KH's; 2.4.4 always waits 15 s
        "allow_duplicate_users": ("allow_duplicate_users", boolean),
    },
}
# 2.4.4 url options about sources and stream start/end: recognised, not acted on.
NOT_SUPPORTED = {"url": ("mount_add", "mount_remove", "stream_auth")}
_CLASSES: dict[str, type[HtpasswdAuth] | type[UrlAuth]] = {"htpasswd": HtpasswdAuth, "url": UrlAuth}


@dataclass(frozen=True, slots=True)
class AuthOption:
    """One ``<option>`` as written, with the XML path it was read at."""

    name: str
    value: str
    path: str


def build_auth_option(values: Values, path: str, ctx: ReadContext) -> AuthOption:
    name = require(values, "name", f"{path}/@name", "a name attribute")
    value = require(values, "value", f"{path}/@value", "a value attribute")
    return AuthOption(name, value, path)


def build_listener_auth(values: Values, path: str, ctx: ReadContext) -> ListenerAuth:
    """One mount's ``<authentication>``; raises ConfigError for what would leave it open."""
    kind = require(values, "type", f"{path}/@type", "a type attribute: htpasswd or url")
    given = _read_options(kind, values.get("options", ()), ctx)
    if kind == "htpasswd":
        require(given, "filename", f"{path}/option", 'an <option name="filename" value="…"/>')
    return _CLASSES[kind](**given)


def _read_options(kind: str, options: tuple[AuthOption, ...], ctx: ReadContext) -> Values:
    """field → value for the options ``kind`` knows; the others are warned about."""
    known, given = OPTIONS[kind], {}
    for option in options:
        if option.name in NOT_SUPPORTED.get(kind, ()):
            ctx.warn(option.path, f"{kind} option {option.name!r} is not supported, ignored")
        elif option.name not in known:
            ctx.warn(option.path, f"unknown {kind} option {option.name!r}, ignored")
        else:
            field, convert = known[option.name]
            if field in given:
                ctx.warn(option.path, "sets a value already given; this later one wins")
            given[field] = _convert(option, convert)
    return given


def _convert(option: AuthOption, convert: Converter[Any]) -> Any:
    try:
        return convert(option.value)
    except BadValue as error:
        raise ConfigError(f"{option.path}/@value", option.value, error.expected) from None
