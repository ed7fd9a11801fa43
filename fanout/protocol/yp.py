"""The YP directory protocol as Icecast 2.4.4 speaks it (``src/yp.c``), sans IO.

Theory of operation. For every ``<directory>`` and every public mount, the server keeps
one listing (``YpEntry``). It POSTs form bodies to the directory's ``yp-url``:

* ``action=add&sn=…&genre=…&cpswd=…&desc=…&url=…&listenurl=…&type=…&stype=…&b=…&<audio
  info>`` (``render_add``) a minute after the mount went public. The answer carries
  ``YPResponse: 1`` on success, the listing's ``SID`` and maybe ``TouchFreq`` (seconds).
* ``action=touch&sid=…&st=<title>&listeners=N&max_listeners=M&stype=…`` (``render_touch``)
  5 s after the add, then every touch interval, and 3 s after a title change unless a
  touch went out in the last minute.
* ``action=remove&sid=…`` (``render_remove``) when the mount stops being public.

A refused add is retried after two hours, a refused touch re-adds after 20 minutes (or
the touch interval if longer), a directory that cannot be reached is re-added after 20
minutes, and its other listings wait a quarter of an hour more. Values are escaped as
2.4.4's ``util_url_escape`` does: every byte of the UTF-8 text but ``0-9A-Za-z`` becomes
``%xx`` (lower-case hex); the audio info goes last as one escaped field without ``=``,
and add and touch bodies end in CRLF, as 2.4.4 sends them (dir.xiph.org's server strips
it). Answers are read from the response headers
alone (``parse_answer``); the HTTP status does not matter, as with 2.4.4's libcurl.

The state changes are pure functions of ``(entry, answer, now)``; the caller does the
requests (one at a time per directory, ``Directory.yp_url_timeout`` each) and the timing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal, Mapping
from urllib.parse import urlsplit

from fanout.protocol.errors import ProtocolError
from fanout.protocol.text import to_wire
from fanout.protocol.upstream import ResponseHead

# Delays, in seconds, as 2.4.4 uses them (src/yp.c).
FIRST_ADD_DELAY = 60  # after a mount turns public (yp_add)
FIRST_TOUCH_DELAY = 5  # after a successful add
TITLE_TOUCH_DELAY = 3  # after a title change (yp_touch) …
TITLE_TOUCH_MIN_GAP = 60  # … unless the last touch is more recent than this
ADD_REFUSED_DELAY = 7200  # the directory refused the add
TOUCH_REFUSED_DELAY = 1200  # the directory refused a touch (at least; or the touch interval)
UNREACHABLE_DELAY = 1200  # no answer at all: add again after this
UNREACHABLE_SKIP = 900  # … and the directory's other listings wait this much longer
MIN_TOUCH_INTERVAL = 30  # a TouchFreq below this (or unreadable) counts as this
# A SID is echoed into later bodies unescaped (as 2.4.4 does): accept only what cannot
# break a form body. Directories hand out UUIDs.
_SID = re.compile(r"[A-Za-z0-9._~-]{1,128}")
_LEADING_DIGITS = re.compile(r"\s*([0-9]{1,9})")
_SAFE = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

Action = Literal["add", "touch"]


def yp_escape(text: str) -> str:
    """``text`` as 2.4.4's ``util_url_escape`` writes it: UTF-8, all but letters and digits
    as ``%xx`` with lower-case hex."""
    return "".join(chr(byte) if byte in _SAFE else f"%{byte:02x}" for byte in text.encode("utf-8"))


# ---- what is sent -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class YpListing:
    """What an add tells the directory about one mount (2.4.4 takes them from its stats)."""

    listen_url: str  # http://<hostname>:<port><mount>
    server_name: str = ""  # stream name
    server_type: str = ""  # the stream's Content-Type
    genre: str = ""
    description: str = ""
    url: str = ""  # the stream's web site
    subtype: str = ""  # codecs, e.g. "vorbis"
    bitrate: str = ""  # "bitrate", else "ice-bitrate"
    audio_info: str = ""  # the source's ice-audio-info header
    cluster_password: str = ""  # <mount><cluster-password>


def listing_from_stats(stats: Mapping[str, str], cluster_password: str | None) -> YpListing:
    """What an add says of a mount whose stats (``fanout.protocol.stats.mount_stats``) are
    ``stats``: 2.4.4 takes the fields from its stats tree too, so the defaults
    ("Unspecified name", …) and the ``<mount>`` overrides are the same."""
    return YpListing(
        listen_url=stats["listenurl"], server_name=stats.get("server_name", ""),
        server_type=stats.get("server_type", ""), genre=stats.get("genre", ""),
        description=stats.get("server_description", ""), url=stats.get("server_url", ""),
        subtype=stats.get("subtype", ""), bitrate=stats.get("bitrate", ""),
        audio_info=stats.get("audio_info", ""), cluster_password=cluster_password or "")


def is_public(stats: Mapping[str, str]) -> bool:
    """Whether a mount with these stats is listed: its ``public`` (the ``<mount><public>``
    setting, else the source's ice-public / icy-pub header) read as 2.4.4's atoi does."""
    match = _LEADING_DIGITS.match(stats.get("public", "0"))
    return match is not None and int(match.group(1)) != 0


def listen_url(hostname: str, port: int, mount: str) -> str:
    """The URL listeners are told, as 2.4.4 builds it from ``<hostname>`` and the port."""
    return f"http://{hostname}:{port}{mount}"


def render_add(listing: YpListing) -> bytes:
    """The body of an add request."""
    fields = (("sn", listing.server_name), ("genre", listing.genre),
              ("cpswd", listing.cluster_password), ("desc", listing.description),
              ("url", listing.url), ("listenurl", listing.listen_url),
              ("type", listing.server_type), ("stype", listing.subtype), ("b", listing.bitrate))
    body = "action=add&" + "&".join(f"{name}={yp_escape(value)}" for name, value in fields)
    return f"{body}&{yp_escape(listing.audio_info)}\r\n".encode("ascii")


def yp_song(artist: str | None, title: str | None) -> str:
    """The ``st`` of a touch: "artist - title", or whichever is there, as 2.4.4 joins them
    (an artist without a title keeps the separator)."""
    if artist is None:
        return title or ""
    return f"{artist} - {title or ''}"


def touch_max_listeners(max_listeners: int, client_limit: int) -> int:
    """The ``max_listeners`` of a touch: the mount's, or the server's client limit when
    the mount has none (-1)."""
    return client_limit if max_listeners < 0 else max_listeners


def render_touch(sid: str, song: str, listeners: int, max_listeners: int, subtype: str) -> bytes:
    """The body of a touch request."""
    return (f"action=touch&sid={sid}&st={yp_escape(song)}&listeners={listeners}"
            f"&max_listeners={max_listeners}&stype={yp_escape(subtype)}\r\n").encode("ascii")


def render_remove(sid: str) -> bytes:
    """The body of a remove request."""
    return f"action=remove&sid={sid}".encode("ascii")


@dataclass(frozen=True, slots=True)
class YpServer:
    """Where a ``yp-url`` points: the host to connect to, over TLS or not."""

    host: str
    port: int
    tls: bool


def yp_server(yp_url: str) -> YpServer:
    """The server of ``yp_url`` (default ports 80 and 443). Raises ProtocolError(…, 0) for
    a URL that is not http:// or https:// with a host, or has a bad port."""
    parts = urlsplit(yp_url)
    try:
        port = parts.port
    except ValueError:
        raise ProtocolError(f"bad port in {yp_url!r}", 0) from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProtocolError(f"not an http:// or https:// URL: {yp_url!r}", 0)
    tls = parts.scheme == "https"
    return YpServer(parts.hostname, port or (443 if tls else 80), tls)


def render_request(yp_url: str, body: bytes, user_agent: str) -> bytes:
    """The whole POST of ``body`` to ``yp_url`` (User-Agent: the ``<server-id>``, as 2.4.4).

    Raises ProtocolError(…, 0) for a URL ``yp_server`` refuses.
    """
    yp_server(yp_url)
    parts = urlsplit(yp_url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host = parts.netloc.rsplit("@", 1)[-1]
    head = (f"POST {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {user_agent}\r\n"
            "Accept: */*\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return to_wire(head) + body


# ---- what comes back ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class YpAnswer:
    """A directory's answer, from its headers."""

    ok: bool  # "YPResponse: 1"
    sid: str | None = None  # "SID", when usable (see _SID)
    touch_interval: int | None = None  # "TouchFreq", at least MIN_TOUCH_INTERVAL
    message: str | None = None  # "YPMessage", for the log


def parse_answer(head: ResponseHead) -> YpAnswer:
    """Read a directory's answer from its response head (any status, as 2.4.4)."""
    sid = head.header("sid")
    return YpAnswer(
        ok=(head.header("ypresponse") or "").startswith("1"),
        sid=sid if sid is not None and _SID.fullmatch(sid) else None,
        touch_interval=_touch_interval(head.header("touchfreq")),
        message=head.header("ypmessage"),
    )


def _touch_interval(value: str | None) -> int | None:
    if value is None:
        return None
    match = _LEADING_DIGITS.match(value)
    return max(MIN_TOUCH_INTERVAL, int(match.group(1)) if match else 0)


# ---- one listing's life -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class YpEntry:
    """One mount's listing in one directory: the next request and when it is due."""

    action: Action
    due: float
    touch_interval: int
    sid: str | None = None  # set while listed
    last_touch: float | None = None


def listing_started(now: float, touch_interval: int, add_delay: float = FIRST_ADD_DELAY) -> YpEntry:
    """A mount turned public: add it in ``add_delay`` s (2.4.4: FIRST_ADD_DELAY;
    ``touch_interval``: the ``<directory>``'s, until the directory says otherwise)."""
    return YpEntry("add", now + add_delay, touch_interval)


def after_add(entry: YpEntry, answer: YpAnswer | None, now: float) -> YpEntry:
    """The entry after an add got ``answer`` (None: the directory could not be reached)."""
    if answer is None:
        return replace(entry, action="add", due=now + UNREACHABLE_DELAY, sid=None)
    if not answer.ok or answer.sid is None:
        return replace(entry, action="add", due=now + ADD_REFUSED_DELAY, sid=None)
    interval = answer.touch_interval or entry.touch_interval
    return YpEntry("touch", now + FIRST_TOUCH_DELAY, interval, answer.sid)


def after_touch(entry: YpEntry, answer: YpAnswer | None, now: float) -> YpEntry:
    """The entry after a touch got ``answer`` (None: unreachable)."""
    interval = answer.touch_interval if answer and answer.touch_interval else entry.touch_interval
    if answer is None:
        return YpEntry("add", now + UNREACHABLE_DELAY, interval)
    if not answer.ok:  # the directory forgot us: list again later
        return YpEntry("add", now + max(TOUCH_REFUSED_DELAY, interval), interval)
    return replace(entry, due=now + interval, touch_interval=interval, last_touch=now)


def directory_unreachable(entry: YpEntry) -> YpEntry:
    """Another listing found the directory unreachable: this one waits UNREACHABLE_SKIP s
    more and is added again (2.4.4 skips the directory's other listings that round)."""
    return YpEntry("add", entry.due + UNREACHABLE_SKIP, entry.touch_interval)


def title_changed(entry: YpEntry, now: float) -> YpEntry:
    """A new title: touch soon, unless a touch went out less than TITLE_TOUCH_MIN_GAP ago."""
    if entry.action != "touch":
        return entry
    recent = entry.last_touch is not None and now - entry.last_touch <= TITLE_TOUCH_MIN_GAP
    if recent or entry.due <= now + TITLE_TOUCH_DELAY:
        return entry
    return replace(entry, due=now + TITLE_TOUCH_DELAY)


def removal(entry: YpEntry) -> bytes | None:
    """The remove body for a listing that ends, or None if it was never listed."""
    return render_remove(entry.sid) if entry.sid is not None else None
