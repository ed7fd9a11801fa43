"""Response heads, byte-exact to Icecast 2.4.4 (PROTOCOL.md §4.3, §5.2, §5.8; WIRE.md §5).

Every renderer returns bytes and takes ``now`` (epoch seconds) and ``server_id`` from the
caller. The common head is, in this order: status line, ``Server``, ``Connection: Close``,
``Date``, ``Content-Type``, [``WWW-Authenticate`` for 401], the three no-cache headers, then
the configured ``<http-headers>`` the caller selected. Header values are made single-line
(CR, LF and NUL removed) so no value can inject a header. Heads are a byte format: wire
text goes out with ``text.to_wire``, so source header bytes reach listeners unchanged.
Error bodies are a display format (``text.display``): valid UTF-8 whatever they quote.
"""

from __future__ import annotations

import html
import re
from typing import Callable, Iterable, Sequence

from fanout.protocol.dates import http_date
from fanout.protocol.text import display, to_wire

REASONS = {
    200: "OK",
    206: "Partial Content",
    302: "Found",
    400: "Bad Request",
    401: "Authentication Required",
    403: "Forbidden",
    404: "File Not Found",
    411: "Length Required",
    413: "Request Entity Too Large",
    416: "Request Range Not Satisfiable",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

# Sent with Flash players and MSIE, which refuse a body of unknown length (Icecast's value).
FLASH_CONTENT_LENGTH = 221183499
AUTH_REALM = "Icecast2 Server"  # fixed in 2.4.4 (PROTOCOL.md §5.9)
UNAUTHORISED_BODY = "You need to authenticate\r\n"

_NO_CACHE_HEADERS = (
    ("Cache-Control", "no-cache, no-store"),
    ("Expires", "Mon, 26 Jul 1997 05:00:00 GMT"),
    ("Pragma", "no-cache"),
)
_LINE_BREAKS = re.compile(r"[\r\n\x00]")
_BITRATE = re.compile(r"bitrate=([0-9]+)")

Header = tuple[str, str]


def _single_line(value: str) -> str:
    return _LINE_BREAKS.sub("", value)


def _status_line(status: int, version: str = "1.0") -> str:
    return f"HTTP/{version} {status} {REASONS.get(status, 'Unknown')}"


def _head(status_line: str, lines: Iterable[str]) -> bytes:
    text = "".join(f"{line}\r\n" for line in (status_line, *lines)) + "\r\n"
    return to_wire(text)


def _lines(headers: Iterable[Header]) -> list[str]:
    return [f"{_single_line(name)}: {_single_line(value)}" for name, value in headers]


def _common_headers(server_id: str, now: float, content_type: str, *extra: Header) -> list[Header]:
    """Server, Connection, Date, Content-Type, ``extra``, then the no-cache trio."""
    return [
        ("Server", server_id),
        ("Connection", "Close"),
        ("Date", http_date(now)),
        ("Content-Type", content_type),
        *extra,
        *_NO_CACHE_HEADERS,
    ]


def render_head(
    status: int, content_type: str, *, server_id: str, now: float,
    headers: Sequence[Header] = (), version: str = "1.0",
) -> bytes:
    """Return a head with the common headers, then ``headers`` in order (no body)."""
    common = _common_headers(server_id, now, content_type)
    return _head(_status_line(status, version), _lines([*common, *headers]))


# --- errors (§5.8) -------------------------------------------------------------------

ErrorStyle = Callable[[int, str], tuple[str, str, tuple[Header, ...]]]


def _html_error(status: int, message: str) -> tuple[str, str, tuple[Header, ...]]:
    # Escaped although Icecast does not: a message may one day carry a client's path.
    text = html.escape(display(f"{status} - {message}"), quote=False)
    body = f"<html><head><title>Error {status}</title></head><body><b>{text}</b></body></html>\r\n"
    return "text/html; charset=utf-8", body, ()


def _plain_error(status: int, message: str) -> tuple[str, str, tuple[Header, ...]]:
    return "text/plain; charset=utf-8", display(message), ()


def _auth_error(status: int, message: str) -> tuple[str, str, tuple[Header, ...]]:
    challenge = ("WWW-Authenticate", f'Basic realm="{AUTH_REALM}"')
    return "text/plain; charset=utf-8", UNAUTHORISED_BODY, (challenge,)


# Status -> how its body looks; every other status gets the HTML page.
_ERROR_STYLES: dict[int, ErrorStyle] = {401: _auth_error, 403: _plain_error}


def render_error(
    status: int, message: str, *, server_id: str, now: float, extra_headers: Sequence[Header] = ()
) -> bytes:
    """Return an Icecast 2.4.4 error response: head and body, no Content-Length.

    401 ignores ``message`` (fixed body and Basic challenge); 403 sends it as text/plain;
    anything else wraps it in Icecast's HTML page. ``extra_headers`` are the global
    ``<http-headers>`` matching ``status`` (the caller filters) and follow Pragma.
    """
    content_type, body, challenge = _ERROR_STYLES.get(status, _html_error)(status, message)
    headers = _common_headers(server_id, now, content_type, *challenge)
    head = _head(_status_line(status), _lines([*headers, *extra_headers]))
    return head + body.encode("utf-8")


# --- sources (§4.3) ------------------------------------------------------------------


def render_source_ok() -> bytes:
    """Return the bare 200 that tells a source to start streaming."""
    return b"HTTP/1.0 200 OK\r\n\r\n"


def render_continue() -> bytes:
    """Return Icecast's interim answer to ``Expect: 100-continue``."""
    return b"HTTP/1.1 100 Continue\r\nContent-Length: 0\r\n\r\n"


# --- listeners (§5.2) ----------------------------------------------------------------

# Source header name -> listener header name, for the ice-* names not simply renamed.
_ICE_RENAMES = {"ice-public": "icy-pub", "ice-bitrate": "icy-br"}
_DROPPED = frozenset({"ice-password", "icy-metaint"})


def listener_icy_headers(source_headers: Sequence[Header], stream_name: str | None) -> list[Header]:
    """Return the listener headers derived from a source's (or upstream's) headers.

    Source headers are taken in ascending lower-cased name order (stable, duplicates
    kept): ``ice-audio-info`` gives ``icy-br`` (its first ``bitrate=N``, if any) and itself;
    ``ice-name`` gives ``icy-name`` (``stream_name`` wins when set); ``ice-public`` and
    ``ice-bitrate`` give ``icy-pub`` and ``icy-br``; other ``ice-X`` give ``icy-X``; ``icy-X``
    pass unchanged; ``ice-password``, ``icy-metaint`` and all other headers are dropped.
    Names are lower-case; values are single-line.
    """
    mapped: list[Header] = []
    for name, value in sorted(((n.lower(), v) for n, v in source_headers), key=lambda h: h[0]):
        mapped.extend(_map_source_header(name, _single_line(value), stream_name))
    return mapped


def _map_source_header(name: str, value: str, stream_name: str | None) -> list[Header]:
    if name in _DROPPED or not name.startswith(("ice-", "icy-")):
        return []
    if name == "ice-audio-info":
        return _audio_info_headers(value)
    if name == "ice-name":
        return [("icy-name", value if stream_name is None else _single_line(stream_name))]
    if name.startswith("icy-"):
        return [(name, value)]
    return [(_ICE_RENAMES.get(name, "icy-" + name[4:]), value)]


def _audio_info_headers(value: str) -> list[Header]:
    # Like Icecast's strstr + sscanf: only the first "bitrate=" counts, digits must follow.
    start = value.find("bitrate=")
    bitrate = _BITRATE.match(value, start) if start >= 0 else None
    audio_info = [("ice-audio-info", value)]
    return [("icy-br", bitrate.group(1)), *audio_info] if bitrate else audio_info


def _icy_line(name: str, value: str) -> str:
    # Icecast writes the icy headers "name:value"; ice-audio-info alone keeps the space.
    separator = ": " if name == "ice-audio-info" else ":"
    return f"{_single_line(name)}{separator}{_single_line(value)}"


def render_listener_head(
    *,
    status_line: str = "HTTP/1.0 200 OK",
    server_id: str,
    now: float,
    content_type: str,
    extra_headers: Sequence[Header],
    icy_headers: Sequence[Header],
    metaint: int,
    user_agent: str | None = None,
    flash: bool = False,
) -> bytes:
    """Return the head Icecast 2.4.4 sends a listener before the stream (no body).

    ``extra_headers``: the global then the mount ``<http-headers>`` for status 200.
    ``icy_headers``: from ``listener_icy_headers``. ``Content-Length: 221183499`` is added
    when ``flash`` (the request had X-Flash-Version) or ``user_agent`` contains "MSIE";
    ``icy-metaint:N`` comes last when ``metaint`` > 0.
    """
    lines = _lines([*_common_headers(server_id, now, content_type), *extra_headers])
    lines += [_icy_line(name, value) for name, value in icy_headers]
    if flash or (user_agent is not None and "MSIE" in user_agent):
        lines.append(f"Content-Length: {FLASH_CONTENT_LENGTH}")
    if metaint > 0:
        lines.append(f"icy-metaint:{metaint}")
    return _head(_single_line(status_line), lines)


# --- other answers -------------------------------------------------------------------


def render_redirect(location: str, *, server_id: str, now: float, version: str = "1.0") -> bytes:
    """Return an empty-bodied ``302 Found`` to ``location``, laid out like Icecast-KH's.

    KH sends no Server header on a 302; we do, as on every other answer. ``version``
    is the status line's HTTP version (KH echoes the request's).
    """
    headers = [
        ("Server", server_id),
        ("Connection", "Close"),
        ("Date", http_date(now)),
        ("Content-Type", "text/html"),
        ("Location", location),
        ("Content-Length", "0"),
    ]
    return _head(_status_line(302, version), _lines(headers))


def render_text(
    status: int,
    body: bytes,
    content_type: str,
    *,
    server_id: str,
    now: float,
    extra_headers: Sequence[Header] = (),
) -> bytes:
    """Return a complete response with a body of known length (admin XML, JSON, text).

    The head is the common one with ``Content-Length`` last, as 2.4.4's admin replies.
    """
    headers = [*_common_headers(server_id, now, content_type), *extra_headers]
    headers.append(("Content-Length", str(len(body))))
    return _head(_status_line(status), _lines(headers)) + body
