"""``<mount>`` blocks and how they resolve to the effective settings of one mount.

Lookup, as in 2.4.4 (PROTOCOL.md §7.4): the first normal block in file order whose
``mount-name`` equals the mount or matches it as an FNM_PATHNAME glob; the
``type="default"`` block fills every field that block leaves unset; a mount no normal
block matches gets the default block alone; without either, the built-in defaults.
That is why every ``MountConfig`` field is ``None`` ("not set in the XML") by default and
the 2.4.4 defaults live in ``ResolvedMount`` and ``resolve_mount`` instead. One field is
not merged: ``<authentication>`` of the default block protects only the mounts no normal
block matches (2.4.4's merge leaves it out, "TODO: dst->auth" in ``src/cfgfile.c``).
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields, replace
from typing import Any

from .mountglob import mount_matches

DEFAULT_SOURCE_USER = "source"  # 2.4.4: the user a source logs in with unless <username> is set
DEFAULT_CHARSET = "ISO8859-1"  # 2.4.4: charset assumed for metadata of non-Ogg streams
DEFAULT_AUTH_HEADER = "icecast-auth-user: 1\r\n"  # 2.4.4's default ends the line: whole-line match
DEFAULT_TIMELIMIT_HEADER = "icecast-auth-timelimit:"
DEFAULT_AUTH_TIMEOUT = 15  # seconds for the auth server to answer (2.4.4's libcurl timeout)
# Fields of a default block that a normal block never inherits (see the module doc).
_NOT_MERGED = frozenset({"mount_name", "is_default", "authentication"})


@dataclass(frozen=True, slots=True)
class HttpHeader:
    """One ``<header name= value= status=>``; ``status`` None means every response."""

    name: str
    value: str
    status: int | None = None


@dataclass(frozen=True, slots=True)
class HtpasswdAuth:
    """``<authentication type="htpasswd">``: users and password hashes in a file."""

    filename: str  # opened as given: a relative name is relative to the working directory
    allow_duplicate_users: bool = False  # 2.4.4 default: one connection per user and mount


@dataclass(frozen=True, slots=True)
class UrlAuth:
    """``<authentication type="url">``: an auth server says who may listen."""

    listener_add: str | None = None  # None: every listener is let in (2.4.4)
    listener_remove: str | None = None  # told when a let-in listener leaves
    username: str | None = None  # Basic credentials for the auth server, if both set
    password: str | None = None
    auth_header: str = DEFAULT_AUTH_HEADER  # a response line starting with this lets in
    timelimit_header: str = DEFAULT_TIMELIMIT_HEADER  # then seconds the listener may stay
    headers: tuple[str, ...] = ()  # listener headers passed on as POST fields
    header_prefix: str = ""  # put before the passed headers' names
    timeout: int = DEFAULT_AUTH_TIMEOUT  # seconds (Icecast-KH's option; 2.4.4 fixes 15)
    allow_duplicate_users: bool = False  # 2.4.4 default, for listeners giving a user name


ListenerAuth = HtpasswdAuth | UrlAuth


@dataclass(frozen=True, slots=True)
class MountConfig:
    """One ``<mount>`` block as written; ``None`` = not set (2.4.4 default in brackets)."""

    mount_name: str | None = None  # glob pattern; None only for the default block
    is_default: bool = False  # type="default"
    username: str | None = None  # ["source"]
    password: str | None = None  # [<authentication><source-password>]
    max_listeners: int | None = None  # [-1: unlimited]
    max_listener_duration: int | None = None  # seconds [0: unlimited]
    hidden: bool | None = None  # [False]
    public: int | None = None  # [-1: the source decides]
    burst_size: int | None = None  # [-1: <limits> burst]
    queue_size: int | None = None  # [0: <limits><queue-size>]
    source_timeout: int | None = None  # [0: <limits><source-timeout>]
    mp3_metadata_interval: int | None = None  # [-1: upstream's, else 16000]
    charset: str | None = None  # ["ISO8859-1"]
    stream_name: str | None = None
    stream_description: str | None = None
    stream_url: str | None = None
    genre: str | None = None
    bitrate: str | None = None
    content_type: str | None = None  # XML <type>
    subtype: str | None = None
    fallback_mount: str | None = None
    fallback_override: bool | None = None  # [False]
    fallback_when_full: bool | None = None  # [False]
    no_mount: bool | None = None  # [False]
    intro: str | None = None  # file in the webroot sent to each new listener first
    http_headers: tuple[HttpHeader, ...] = ()
    authentication: ListenerAuth | None = None  # listener authentication [none: open]
    dump_file: str | None = None  # strftime pattern of a file the stream is appended to
    on_connect: str | None = None  # program run with the mount name when a source starts
    on_disconnect: str | None = None  # … and when it ends
    cluster_password: str | None = None  # sent to YP directories (groups relays of a stream)


@dataclass(frozen=True, slots=True)
class ResolvedMount:
    """Every effective setting of one mount name (see ``resolve_mount``).

    The first fields fall back to server-wide values, so they have no default here.
    """

    name: str
    password: str | None  # mount's, else <source-password>; None: every source is refused
    burst_size: int  # mount's if >= 0, else Limits.effective_burst_size
    queue_size: int  # mount's if > 0, else <limits><queue-size>
    source_timeout: int  # mount's if > 0, else <limits><source-timeout>
    metadata_interval: int  # mp3-metadata-interval if > 0; 0: the upstream's, else 16000
    username: str = DEFAULT_SOURCE_USER
    max_listeners: int = -1  # -1 unlimited, 0 nobody
    max_listener_duration: int = 0  # seconds, 0 unlimited
    hidden: bool = False
    public: int = -1  # -1: the source decides (its ice-public header)
    charset: str = DEFAULT_CHARSET
    stream_name: str | None = None
    stream_description: str | None = None
    stream_url: str | None = None
    genre: str | None = None
    bitrate: str | None = None
    content_type: str | None = None
    subtype: str | None = None
    fallback_mount: str | None = None
    fallback_override: bool = False
    fallback_when_full: bool = False
    no_mount: bool = False
    intro: str | None = None
    http_headers: tuple[HttpHeader, ...] = ()  # the mount's own; globals are Config.http_headers
    authentication: ListenerAuth | None = None  # None: anyone may listen
    dump_file: str | None = None
    on_connect: str | None = None
    on_disconnect: str | None = None
    cluster_password: str | None = None


@dataclass(frozen=True, slots=True)
class Inherited:
    """The server-wide values a mount falls back to (from ``<limits>``/``<authentication>``)."""

    password: str | None
    burst_size: int
    queue_size: int
    source_timeout: int


# Fields copied from the merged block as they are, falling back to ResolvedMount's default.
_COPIED = tuple(
    field for field in fields(ResolvedMount)
    if field.name in {f.name for f in fields(MountConfig)} and field.default is not MISSING
)


def find_mount_block(blocks: tuple[MountConfig, ...], name: str) -> MountConfig | None:
    """Return the first block (file order) whose mount-name equals or globs ``name``."""
    for block in blocks:
        if block.mount_name is not None and mount_matches(block.mount_name, name):
            return block
    return None


def merge_mounts(block: MountConfig, default: MountConfig) -> MountConfig:
    """Return ``block`` with every unset field (None, or no headers) taken from ``default``,
    except its authentication (see the module doc)."""
    filled = {}
    for field in fields(MountConfig):
        if field.name in _NOT_MERGED:
            continue
        if getattr(block, field.name) in (None, ()):
            filled[field.name] = getattr(default, field.name)
    return replace(block, **filled)


def resolve_mount(
    blocks: tuple[MountConfig, ...], default: MountConfig | None, name: str, inherited: Inherited
) -> ResolvedMount:
    """Return the effective settings of mount ``name`` (lookup rules in the module doc)."""
    default = _default_for(default, name)
    block = find_mount_block(blocks, name) or default or MountConfig()
    if default is not None and block is not default:
        block = merge_mounts(block, default)
    copied = {field.name: _or(getattr(block, field.name), field.default) for field in _COPIED}
    return ResolvedMount(name=name, **copied, **_inherited_values(block, inherited))


def _default_for(default: MountConfig | None, name: str) -> MountConfig | None:
    # 2.4.4 looks the default block up like a normal one, so a named default block only
    # applies to the mounts its name matches.
    if default is None or default.mount_name is None or mount_matches(default.mount_name, name):
        return default
    return None


def _inherited_values(block: MountConfig, inherited: Inherited) -> dict[str, Any]:
    """The fields where a mount value of -1 or 0 means "use the server-wide one"."""
    return {
        "password": _or(block.password, inherited.password),
        "burst_size": _when(block.burst_size, 0, inherited.burst_size),
        "queue_size": _when(block.queue_size, 1, inherited.queue_size),
        "source_timeout": _when(block.source_timeout, 1, inherited.source_timeout),
        "metadata_interval": _when(block.mp3_metadata_interval, 1, 0),
    }


def _or(value: Any, fallback: Any) -> Any:
    return fallback if value is None else value


def _when(value: int | None, minimum: int, fallback: int) -> int:
    """``value`` if set and at least ``minimum``, else ``fallback``."""
    return value if value is not None and value >= minimum else fallback
