"""Talking to an upstream as a client (PROTOCOL.md §1.2, §3.2, §3.3): the request bytes a
slave or relay sends, and the response head it gets back. Sans-IO.

The response head ends at the first empty line once CRs are dropped (2.4.4 reads it that
way), is bounded by MAX_HEAD, and its status line may carry any version token: Shoutcast's
`ICY 200 OK` is a success like `HTTP/1.0 200 OK`.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from fanout.protocol.auth import basic_authorization
from fanout.protocol.errors import ProtocolError
from fanout.protocol.numbers import saturated_int
from fanout.protocol.text import from_wire, readable, to_wire

# Largest response head accepted from an upstream (2.4.4: 4095 bytes; we allow more).
MAX_HEAD = 16384
# Redirects followed for one pull (2.4.4: 10).
MAX_REDIRECTS = 10
# Digits of a Content-Length read at most (a 16 KB number is not a length; int() of one is slow).
_MAX_LENGTH_DIGITS = 18
_STATUS_LINE = re.compile(r"(\S+) (\d{3})(?: (.*))?$")
_LEADING_INT = re.compile(r"\s*\+?([0-9]+)")
_PORT = re.compile(r"[0-9]{1,5}")  # ASCII digits: str.isdigit() also accepts "²", which int() refuses


@dataclass(frozen=True, slots=True)
class ResponseHead:
    version: str  # "HTTP/1.0", "ICY", …
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]  # (lower-cased name, stripped value), in order

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def metaint(self) -> int:
        """The upstream's `icy-metaint` (0: no inline metadata), read like atoi."""
        match = _LEADING_INT.match(self.header("icy-metaint") or "")
        return saturated_int(match.group(1)) if match else 0  # int() fails past 4300 digits

    @property
    def content_type(self) -> str | None:
        return self.header("content-type")

    def content_length(self) -> int | None:
        """The declared body length (None: the body ends when the upstream closes).

        Raises ProtocolError if the header is there but not a decimal number."""
        value = self.header("content-length")
        if value is None:
            return None
        if not (value.isascii() and value.isdigit()) or len(value) > _MAX_LENGTH_DIGITS:
            raise ProtocolError(f"bad Content-Length {value[:40]!r}", 0)
        return int(value)

    def icy_headers(self) -> list[tuple[str, str]]:
        """The `icy-*` / `ice-*` headers, to pass on to our listeners."""
        return [(k, v) for k, v in self.headers if k.startswith(("icy-", "ice-"))]


def find_head_end(buffer: bytes, within: int | None = None) -> tuple[int, int] | None:
    """(end of head, start of body): where the first empty line (CRs dropped) ends the
    head in `buffer` (looked for in its first `within` bytes, all if None), else None.
    The one rule for where a response head ends (relays, polls, auth servers)."""
    found = [(index, index + len(sep)) for sep in (b"\r\n\r\n", b"\n\n", b"\n\r\n")
             if 0 <= (index := buffer.find(sep, 0, within))]
    return min(found) if found else None


def head_end(buffer: bytes) -> tuple[int, int] | None:
    """(end of head, start of body) in `buffer`, or None if the head is not complete.

    Raises ProtocolError if no head ended within MAX_HEAD bytes."""
    found = find_head_end(buffer, MAX_HEAD + 4)
    if found is None and len(buffer) >= MAX_HEAD:
        raise ProtocolError(f"upstream response head longer than {MAX_HEAD} bytes", 0)
    return found


def parse_response_head(head: bytes) -> ResponseHead:
    """Parse a response head (without the blank line); raises ProtocolError if malformed."""
    lines = from_wire(head.replace(b"\r", b"")).split("\n")  # values keep their exact bytes
    match = _STATUS_LINE.match(lines[0].strip())
    if match is None:
        raise ProtocolError(f"bad upstream status line {readable(lines[0][:60])!r}", 0)
    headers = []
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if colon and name.strip():
            headers.append((name.strip().lower(), value.strip()))
    return ResponseHead(match.group(1), int(match.group(2)), match.group(3) or "", tuple(headers))


def render_streamlist_request(path: str, user: str, password: str) -> bytes:
    """The slave's poll (2.4.4: HTTP/1.0, no Host, no User-Agent; §1.2)."""
    return (f"GET {path} HTTP/1.0\r\nAuthorization: {basic_authorization(user, password)}"
            "\r\n\r\n").encode("utf-8")


def render_relay_request(path: str, *, host: str, port: int, user_agent: str,
                         icy_metadata: bool = True,
                         credentials: tuple[str, str] | None = None) -> bytes:
    """A relay pull (§3.2), with `Host` carrying the port when it is not 80."""
    lines = [f"GET {path} HTTP/1.0", f"User-Agent: {user_agent}",
             f"Host: {host}" if port == 80 else f"Host: {host}:{port}"]
    if icy_metadata:
        lines.append("Icy-MetaData: 1")
    if credentials is not None:
        lines.append(f"Authorization: {basic_authorization(*credentials)}")
    return to_wire("\r\n".join(lines) + "\r\n\r\n")  # the mount's exact bytes


@dataclass(frozen=True, slots=True)
class Location:
    host: str
    port: int
    path: str
    tls: bool = False  # an https:// target (KH follows those too, §3.11)


# Schemes a 302 may send a relay to, with their default ports.
_REDIRECT_SCHEMES = {"http://": 80, "https://": 443}


def parse_location(value: str) -> Location:
    """A 302 `Location` as 2.4.4 follows it: lowercase `http://` (or, as KH, `https://`)
    only, the scheme's port by default, path from the first `/` (query kept). Raises
    ProtocolError otherwise, and for a port outside 1-65535 or a host name the resolver
    cannot take."""
    scheme = next((s for s in _REDIRECT_SCHEMES if value.startswith(s)), None)
    if scheme is None:
        raise ProtocolError(f"unsupported redirect target {value[:60]!r}", 0)
    rest = value[len(scheme):]
    slash = rest.find("/")
    authority, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    host, colon, port = authority.partition(":")
    number = _REDIRECT_SCHEMES[scheme]
    if colon:
        number = int(port) if _PORT.fullmatch(port) else 0
    if not host or not 0 < number < 65536 or not _resolvable(host):
        raise ProtocolError(f"bad redirect target {value[:60]!r}", 0)
    return Location(host, number, path, scheme == "https://")


def _resolvable(host: str) -> bool:
    # socket.getaddrinfo encodes the host with the idna codec, which raises UnicodeError
    # (not OSError) for an empty or over-long label such as "a..b": refuse it here.
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return True
