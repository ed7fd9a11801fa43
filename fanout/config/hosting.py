"""How the server is hosted: its process (``<security>``), URL aliases (``<paths><alias>``)
and the YP directories it lists its streams in (``<directory>``).

The dataclasses carry 2.4.4's defaults (``src/cfgfile.c``); the builders below turn the
values read from one element into them, with the rules worth naming. Where 2.4.4 silently
drops a block it cannot use (an alias without ``source``, a directory without ``yp-url``,
``changeowner`` without a group), we refuse the file instead, naming the missing element.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ConfigError
from .tagtable import ReadContext, Values

# 2.4.4 replaces a <yp-url-timeout> outside 1..10 s (or none) by 6 s (src/yp.c: yp_recheck_config).
YP_TIMEOUT_RANGE = (1, 10)
DEFAULT_YP_TIMEOUT = 6
# 2.4.4 touches a listing at most this often, whatever <touch-interval> or the directory say.
MIN_YP_TOUCH_INTERVAL = 30
# 2.4.4 reads at most this many <directory> blocks and logs an error for the others.
MAX_YP_DIRECTORIES = 25


@dataclass(frozen=True, slots=True)
class ChangeOwner:
    """``<security><changeowner>``: the user and group the server drops to after binding."""

    user: str
    group: str


@dataclass(frozen=True, slots=True)
class Security:
    """``<security>``."""

    chroot: bool = False  # chroot into <paths><basedir> at start-up
    changeowner: ChangeOwner | None = None  # None: keep the user that started the server


@dataclass(frozen=True, slots=True)
class Alias:
    """``<paths><alias source= destination= [port=] [bind-address=]>``.

    A GET for exactly ``source`` is served as ``destination``; ``port`` and
    ``bind_address`` (None: any) restrict it to the listen sockets configured with them.
    """

    source: str
    destination: str
    port: int | None = None
    bind_address: str | None = None


@dataclass(frozen=True, slots=True)
class Directory:
    """One ``<directory>``: a YP directory server to list public mounts in."""

    yp_url: str
    yp_url_timeout: int = DEFAULT_YP_TIMEOUT  # seconds per request (1..10)
    touch_interval: int = MIN_YP_TOUCH_INTERVAL  # seconds between touches (>= 30)


def build_changeowner(values: Values, path: str, ctx: ReadContext) -> ChangeOwner:
    """2.4.4 changes nothing unless both are found, then refuses to run as root: refuse now."""
    for key in ("user", "group"):
        if key not in values:
            raise ConfigError(f"{path}/{key}", None, f"a {key} name: changeowner needs both")
    return ChangeOwner(values["user"], values["group"])


def build_alias(values: Values, path: str, ctx: ReadContext) -> Alias:
    """``dest`` is 2.4.4's other spelling of ``destination``; both attributes are required."""
    if "source" not in values:
        raise ConfigError(f"{path}/@source", None, "the path the alias maps, starting with '/'")
    if "destination" not in values:
        raise ConfigError(f"{path}/@destination", None, "the path it maps to, starting with '/'")
    return Alias(**values)


def build_directory(values: Values, path: str, ctx: ReadContext) -> Directory:
    """One ``<directory>``, its timeout and touch interval as 2.4.4 bounds them."""
    if "yp_url" not in values:
        raise ConfigError(f"{path}/yp-url", None, "the directory server's http:// URL")
    low, high = YP_TIMEOUT_RANGE
    timeout = values.get("yp_url_timeout", DEFAULT_YP_TIMEOUT)
    if not low <= timeout <= high:
        ctx.warn(f"{path}/yp-url-timeout",
                 f"{timeout} is outside {low} to {high} s: {DEFAULT_YP_TIMEOUT} s applies, as in 2.4.4")
        timeout = DEFAULT_YP_TIMEOUT
    touch = values.get("touch_interval", MIN_YP_TOUCH_INTERVAL)
    if touch < MIN_YP_TOUCH_INTERVAL:
        ctx.warn(f"{path}/touch-interval",
                 f"{touch} is below {MIN_YP_TOUCH_INTERVAL} s: {MIN_YP_TOUCH_INTERVAL} s applies, as in 2.4.4")
        touch = MIN_YP_TOUCH_INTERVAL
    return Directory(values["yp_url"], timeout, touch)


def keep_directories(blocks: tuple[Directory, ...], ctx: ReadContext) -> tuple[Directory, ...]:
    """The first MAX_YP_DIRECTORIES blocks; the others are warned about and dropped."""
    for index in range(MAX_YP_DIRECTORIES + 1, len(blocks) + 1):
        ctx.warn(f"icecast/directory[{index}]",
                 f"ignored: 2.4.4 lists in at most {MAX_YP_DIRECTORIES} directories")
    return blocks[:MAX_YP_DIRECTORIES]
