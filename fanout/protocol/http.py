"""HTTP/ICE request heads: an incremental parser and a few predicates on the result.

Theory of operation
-------------------
A connection starts by sending a request head: a request line, header lines, a blank
line. Sources then keep the connection open and stream audio, so the bytes after the blank
line are not ours: they are handed back as ``HeadParser.leftover``.

``HeadParser`` has three states and one table saying what ``feed`` does in each:

    READING --blank line--> DONE      feed returned the Request; .leftover is set
    READING --bad input---> ERROR     feed raised ProtocolError (status 400)
    DONE / ERROR --feed---> RuntimeError (the caller has a bug: the head is over)

While READING, bytes are buffered until the first blank line. A line ends at LF; any CRs
before the LF are dropped, so ``\\r\\n\\r\\n``, ``\\n\\n`` and the NSV capture tool's
``\\r\\r\\n\\r\\r\\n`` all end the head (as in Icecast). Each feed looks only at its new
bytes: at each LF, whether only CRs stand since the LF before it (each byte is looked at
once, so byte-by-byte feeding stays linear). Once the blank line is found the whole
head is parsed in one go by ``parse_head``, which is pure and usable on its own.

Text fields are *wire text* (``fanout.protocol.text``): the bytes decoded as UTF-8 with
``surrogateescape``, so valid UTF-8 reads naturally and any other byte survives the round
trip through ``responses`` unchanged, like Icecast's byte copy. Renderers that show text
to people use ``text.display`` or ``text.log_safe`` on it, never the raw string.

A head that was read but is refused raises ``BadHead``, a ``ProtocolError`` that also
carries what could be made of the head (``lenient_request``): the access log writes a line
for every request whose head arrived, whatever bytes it held.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable
from urllib.parse import parse_qsl, unquote

from fanout.protocol.errors import ProtocolError
from fanout.protocol.numbers import saturated_int
from fanout.protocol.text import WIRE_ENCODING, WIRE_ERRORS, from_wire

# Icecast 2.4.4 reads heads into a 4 KiB buffer and simply fails on longer ones; we allow
# twice that (long Authorization/Cookie headers) and answer 400 so the client learns why.
MAX_HEAD_BYTES = 8192
# Icecast parses at most 32 header lines; real clients send about 12. Bounds the work per head.
MAX_HEADER_LINES = 64

PROTOCOLS = frozenset({"HTTP", "ICE", "ICY"})
SOURCE_METHODS = frozenset({"SOURCE", "PUT"})

# How text fields are decoded (``fanout.protocol.text``; kept here for their users).
TEXT_ENCODING = WIRE_ENCODING
TEXT_ERRORS = WIRE_ERRORS

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rf"({_TOKEN}) +(\S+) +([A-Za-z]+)/([0-9]+\.[0-9]+)")
_HEADER_LINE = re.compile(rf"({_TOKEN}):[ \t]*(.*?)[ \t]*")
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # controls except HTAB
_PATH_SEPARATORS = re.compile(r"[/\\]")  # Icecast treats "\" like "/" when checking paths
_PATH_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_LEADING_INT = re.compile(r"\s*([+-]?[0-9]+)")
_LENIENT_VERSION = re.compile(r"([A-Za-z]+)/([0-9.]+)")  # the last word of a refused line


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request head. Text fields are decoded as described in the module doc."""

    method: str  # upper-cased: GET, HEAD, SOURCE, PUT, POST, OPTIONS, STATS …
    target: str  # raw request target as sent
    path: str  # query stripped, percent-decoded ("+" stays "+")
    query: tuple[tuple[str, str], ...]  # decoded pairs in order; "a" and "a=" give ("a", "")
    protocol: str  # "HTTP", "ICE" or "ICY"
    version: str  # "1.0", "1.1"
    headers: tuple[tuple[str, str], ...]  # (lower-cased name, stripped value), order and duplicates kept

    def header(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of header ``name`` (any case), else ``default``."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return default

    def query_value(self, name: str, default: str | None = None) -> str | None:
        """Return the first value of query parameter ``name`` (exact case), else ``default``."""
        for key, value in self.query:
            if key == name:
                return value
        return default


class BadHead(ProtocolError):
    """A request head that was read but refused. ``request`` is ``lenient_request`` of it
    (None if not even a request line arrived), for the access log only."""

    def __init__(self, message: str, status: int, request: Request | None) -> None:
        super().__init__(message, status)
        self.request = request


READING, DONE, ERROR = "READING", "DONE", "ERROR"


class HeadParser:
    """Incremental request-head parser; see the module doc for its states.

    ``feed(data)`` returns ``None`` while more bytes are needed and the ``Request`` once the
    head is complete; ``leftover`` then holds the bytes that followed the head (the start
    of a source's stream). ``feed(b"")`` is a no-op: end of input is the caller's business.
    Raises ``BadHead`` (a ``ProtocolError``, status 400) for oversized or malformed heads.
    """

    def __init__(self) -> None:
        self.state = READING
        self.leftover = b""
        self._buffer = bytearray()
        self._last_lf = -1  # offset of the last LF seen, -1 before the first
        self._handlers: dict[str, Callable[[bytes], Request | None]] = {
            READING: self._feed_reading,
            DONE: self._feed_after_end,
            ERROR: self._feed_after_end,
        }

    def feed(self, data: bytes) -> Request | None:
        """Add ``data``; return the Request when the head is complete, else None."""
        return self._handlers[self.state](data)

    def _feed_reading(self, data: bytes) -> Request | None:
        scan = len(self._buffer)
        self._buffer += data
        while (lf := self._buffer.find(b"\n", scan)) >= 0:
            if self._last_lf >= 0 and not self._buffer[self._last_lf + 1:lf].strip(b"\r"):
                self._check_size(lf + 1)  # a blank line: the head ends at the LF before it
                return self._finish(self._last_lf, lf + 1)
            self._last_lf, scan = lf, lf + 1
        self._check_size(len(self._buffer))
        return None

    def _finish(self, head_end: int, body_start: int) -> Request:
        head, self.leftover = bytes(self._buffer[:head_end]), bytes(self._buffer[body_start:])
        self._buffer = bytearray()
        try:
            request = parse_head(head)
        except ProtocolError as exc:
            self.state = ERROR
            raise BadHead(exc.message, exc.status, lenient_request(head)) from None
        self.state = DONE
        return request

    def _check_size(self, head_bytes: int) -> None:
        if head_bytes > MAX_HEAD_BYTES:
            self.state = ERROR
            first_line = bytes(self._buffer.partition(b"\n")[0]) if b"\n" in self._buffer else b""
            raise BadHead("request header too large", 400, lenient_request(first_line))

    def _feed_after_end(self, data: bytes) -> Request | None:
        raise RuntimeError(f"HeadParser.feed() called in state {self.state}")


def parse_head(head: bytes) -> Request:
    """Parse a complete head (without its blank line) into a Request.

    Raises ProtocolError(…, 400) for a malformed request line or header line, a protocol
    token other than HTTP/ICE/ICY, or more than MAX_HEADER_LINES header lines.
    """
    lines = _text_lines(head)
    if len(lines) - 1 > MAX_HEADER_LINES:
        raise ProtocolError("too many header lines", 400)
    for line in lines:
        if _FORBIDDEN_CHARS.search(line):
            raise ProtocolError("control character in request header", 400)
    method, target, protocol, version = _parse_request_line(lines[0])
    headers = tuple(_parse_header_line(line) for line in lines[1:])
    return _request(method, target, protocol, version, headers)


def lenient_request(head: bytes) -> Request | None:
    """What a refused head says, as far as it can be read: method, target and protocol of
    the request line (missing parts empty) and the header lines that are well formed; None
    for a head without a request line. Never raises; for logging only."""
    lines = _text_lines(head)[:MAX_HEADER_LINES + 1]
    words = lines[0].split()
    if not words:
        return None
    version = _LENIENT_VERSION.fullmatch(words[-1]) if len(words) > 1 else None
    protocol, number = version.groups() if version else ("", "")
    target = " ".join(words[1:-1] if version else words[1:])
    matches = (_HEADER_LINE.fullmatch(line) for line in lines[1:])
    headers = tuple((match.group(1).lower(), match.group(2)) for match in matches if match)
    return _request(words[0].upper(), target, protocol, number, headers)


def _text_lines(head: bytes) -> list[str]:
    return [from_wire(line.rstrip(b"\r")) for line in head.split(b"\n")]


def _request(method: str, target: str, protocol: str, version: str,
             headers: tuple[tuple[str, str], ...]) -> Request:
    path, _, query = target.partition("?")
    return Request(
        method=method,
        target=target,
        path=unquote(path, TEXT_ENCODING, TEXT_ERRORS),
        query=tuple(parse_qsl(query, keep_blank_values=True, encoding=TEXT_ENCODING, errors=TEXT_ERRORS)),
        protocol=protocol,
        version=version,
        headers=headers,
    )


def _parse_request_line(line: str) -> tuple[str, str, str, str]:
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        raise ProtocolError("malformed request line", 400)
    method, target, protocol, version = match.groups()
    if protocol not in PROTOCOLS:  # case-sensitive, as in Icecast: "http/1.0" is refused
        raise ProtocolError(f"unsupported protocol {protocol!r}", 400)
    return method.upper(), target, protocol, version


def _parse_header_line(line: str) -> tuple[str, str]:
    # A line starting with whitespace (obsolete folding) or with a space before the colon
    # does not match: RFC 9112 lets a server reject both, and no streaming client sends them.
    match = _HEADER_LINE.fullmatch(line)
    if match is None:
        raise ProtocolError("malformed header line", 400)
    return match.group(1).lower(), match.group(2)


def is_source_method(method: str) -> bool:
    """Return True for the methods a source client uses (SOURCE, PUT), in any case."""
    return method.upper() in SOURCE_METHODS


def validate_mount_path(path: str) -> str:
    """Return ``path`` if it is acceptable as a mount (PROTOCOL.md §4.1).

    It must start with "/" and contain no empty segment ("//") and no dot-only segment
    ("/./", "/../", a trailing "/." or "/.."); "\\" counts as a separator, as in Icecast. A
    trailing "/" is allowed. Raises ProtocolError(…, 400); Icecast closes the connection
    silently instead, and the caller decides which to do.
    """
    if _PATH_CONTROL_CHARS.search(path):
        raise ProtocolError("control character in path", 400)
    if not path.startswith("/"):
        raise ProtocolError("path must start with /", 400)
    segments = _PATH_SEPARATORS.split(path)
    for position, segment in enumerate(segments[1:], start=2):
        if segment == "" and position < len(segments):
            raise ProtocolError("empty path segment", 400)
        if segment and segment.strip(".") == "":
            raise ProtocolError("dot segment in path", 400)
    return path


def wants_continue(request: Request) -> bool:
    """Return True if an Expect header contains "100-continue" (any case)."""
    return any(name == "expect" and "100-continue" in value.lower() for name, value in request.headers)


def wants_icy_metadata(request: Request) -> bool:
    """Return True if the Icy-MetaData header reads as a non-zero integer, like C atoi().

    "1", " 1", "2", "1x" are true; "0", "", "x" and a missing header are false.
    """
    return _atoi(request.header("icy-metadata") or "") != 0


def _atoi(text: str) -> int:
    match = _LEADING_INT.match(text)
    return saturated_int(match.group(1)) if match else 0  # saturates: int() fails past 4300 digits
