"""Files from ``<paths><webroot>`` and ``<paths><alias>``, as Icecast 2.4.4 serves them, sans IO.

Theory of operation (2.4.4 ``src/connection.c: _handle_get_request``, ``src/fserve.c:
fserve_client_create``). A GET's path first goes through the aliases: the first
``<alias>`` whose ``source`` is exactly the path, on a listen socket its ``port`` and
``bind-address`` allow, replaces the path by its ``destination`` (``find_alias``). Admin
and mounts come next; a path that is neither names a file under the webroot
(``webroot_file``) when ``<fileserve>`` is on. The caller does the IO: it resolves the
file with ``os.path.realpath`` and serves it only if ``inside_webroot`` (a symlink may
point anywhere), only a regular file, with ``content_type`` from the extension, the
``Range`` the request asked for (``plan_range``) and the head ``render_file_head``.

Differences from 2.4.4, on purpose: 2.4.4 reads only the first number of a ``Range``
(``bytes=0-1`` gets the whole file, as ``bytes=0-``), answers 416 to a suffix range
(``bytes=-500``) and to a header it cannot read. We follow RFC 9110 for a single range
(an end, a suffix) and serve the whole file for what we cannot use (several ranges, a
unit other than bytes, bad syntax), which RFC 9110 allows; 416 remains for a range
wholly past the end. Heads add ``Last-Modified`` and, on 416, ``Content-Range: bytes
*/size``. Players (Safari probes with ``bytes=0-1``) need the RFC behaviour.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Protocol, Sequence

from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import validate_mount_path
from fanout.protocol.responses import Header, http_date, render_head

# 2.4.4's types for these extensions when the mime.types file does not name them (fserve.c).
FALLBACK_TYPES: Mapping[str, str] = {
    "ogg": "application/ogg", "mp3": "audio/mpeg", "html": "text/html", "css": "text/css",
    "txt": "text/plain", "jpg": "image/jpeg", "png": "image/png", "m3u": "audio/x-mpegurl",
    "aac": "audio/aac",
}
DEFAULT_TYPE = "application/octet-stream"
RANGE_REFUSED_BODY = b"Request Range Not Satisfiable\r\n"  # 2.4.4's text/plain 416 body
# 2.4.4 answers 206 with an HTTP/1.1 status line (every other answer is HTTP/1.0).
PARTIAL_VERSION = "1.1"
# Bytes of a mime.types line we read: 2.4.4 reads lines of at most 4095 bytes.
MAX_MIME_LINE = 4095
# Digits of a range position we convert; a longer one is past the end of any file
# (and int() refuses over 4300 digits).
MAX_RANGE_DIGITS = 19

_RANGE = re.compile(r"bytes=([0-9]*)-([0-9]*)")


class AliasRule(Protocol):
    """What ``find_alias`` needs of a ``fanout.config.Alias``."""

    @property
    def source(self) -> str: ...
    @property
    def destination(self) -> str: ...
    @property
    def port(self) -> int | None: ...
    @property
    def bind_address(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class ByteRange:
    """The bytes ``start``..``end`` (inclusive) of a file of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


# ---- which file ---------------------------------------------------------------------------


def find_alias(
    aliases: Iterable[AliasRule], path: str, port: int, bind_address: str | None
) -> str | None:
    """Return the destination of the first alias for ``path`` on this socket, else None.

    ``port`` and ``bind_address`` are the *configured* ones of the listen socket the
    request came in on (None: it binds every address). An alias with a bind-address
    therefore never applies to a socket configured without one, as in 2.4.4. The match
    is exact (no prefix, no query) and happens once: a destination is not looked up again.
    """
    for alias in aliases:
        if alias.source != path:
            continue
        if alias.port is not None and alias.port != port:
            continue
        if alias.bind_address is not None and alias.bind_address != bind_address:
            continue
        return alias.destination
    return None


def webroot_file(webroot: str, path: str) -> str:
    """Return the file name for request ``path`` (percent-decoded) under ``webroot``.

    Raises ProtocolError(…, 400) for a path 2.4.4 would not normalise (``..`` or ``.``
    segments, ``//``, control characters; ``validate_mount_path``) and (…, 404) for a
    directory path (ending in ``/``). The name may still be a symlink leading out of the
    webroot: the caller checks ``inside_webroot`` on the resolved names.
    """
    validate_mount_path(path)
    if path.endswith("/"):
        raise ProtocolError("The file you requested could not be found", 404)
    return webroot.rstrip("/") + path if webroot.rstrip("/") else path


def inside_webroot(real_webroot: str, real_file: str) -> bool:
    """Whether ``real_file`` lies inside ``real_webroot`` (both already ``realpath``'d)."""
    root = posixpath.normpath(real_webroot)
    target = posixpath.normpath(real_file)
    return target != root and posixpath.commonpath([root, target]) == root


# ---- what type ----------------------------------------------------------------------------


def parse_mime_types(text: str) -> dict[str, str]:
    """Read a ``mime.types`` file: ``type ext ext …`` per line, ``#`` comments.

    A later line naming an extension again wins, as in 2.4.4.
    """
    types: dict[str, str] = {}
    for line in text.splitlines():
        fields = line[:MAX_MIME_LINE].split()
        if len(fields) < 2 or fields[0].startswith("#"):
            continue
        for extension in fields[1:]:
            types[extension] = fields[0]
    return types


def content_type(path: str, types: Mapping[str, str]) -> str:
    """The Content-Type of the file at ``path``: by its extension (case as given), from
    ``types`` (the mime.types file), else 2.4.4's few built-in ones, else octet-stream."""
    name = path.rsplit("/", 1)[-1]
    extension = name.rsplit(".", 1)[1] if "." in name else ""
    return types.get(extension) or FALLBACK_TYPES.get(extension, DEFAULT_TYPE)


# ---- which bytes --------------------------------------------------------------------------


def plan_range(header: str | None, size: int) -> ByteRange | None:
    """Return the part of a ``size``-byte file a ``Range`` header asks for, or None for the
    whole file (no header, or one we may ignore: several ranges, another unit, bad syntax).

    Raises ProtocolError(…, 416) for a single byte range that lies wholly past the end
    (or any range of an empty file, or a suffix of zero bytes).
    """
    if header is None:
        return None
    match = _RANGE.fullmatch(header.strip().replace(" ", "").lower())
    if match is None or not any(match.groups()):
        return None
    first, last = match.groups()
    if not first:  # "bytes=-N": the last N bytes
        return _suffix(_position(last), size)
    start = _position(first)
    if last and _position(last) < start:
        return None  # invalid syntax per RFC 9110: ignore the header
    if start >= size:
        raise ProtocolError("range not satisfiable", 416)
    end = min(_position(last), size - 1) if last else size - 1
    return ByteRange(start, end, size)


def _position(digits: str) -> int:
    return int(digits) if len(digits) <= MAX_RANGE_DIGITS else 10 ** MAX_RANGE_DIGITS


def _suffix(count: int, size: int) -> ByteRange:
    if count == 0 or size == 0:
        raise ProtocolError("range not satisfiable", 416)
    return ByteRange(max(0, size - count), size - 1, size)


# ---- the answer ---------------------------------------------------------------------------


def render_file_head(
    part: ByteRange | None, size: int, file_type: str, mtime: float, *,
    server_id: str, now: float, extra_headers: Sequence[Header] = (),
) -> bytes:
    """Return the head of a file answer: 200 for the whole ``size`` bytes (``part`` None)
    or 206 for ``part``; ``extra_headers`` (the global ``<http-headers>`` for the status)
    follow the common ones, then Last-Modified (``mtime``), Accept-Ranges, Content-Length
    [, Content-Range] as 2.4.4 orders them."""
    headers = [*extra_headers, ("Last-Modified", http_date(mtime)), ("Accept-Ranges", "bytes")]
    if part is None:
        headers.append(("Content-Length", str(size)))
        return render_head(200, file_type, server_id=server_id, now=now, headers=headers)
    headers += [("Content-Length", str(part.length)),
                ("Content-Range", f"bytes {part.start}-{part.end}/{part.size}")]
    return render_head(206, file_type, server_id=server_id, now=now, headers=headers,
                       version=PARTIAL_VERSION)


def render_range_refusal(
    size: int, *, server_id: str, now: float, extra_headers: Sequence[Header] = ()
) -> bytes:
    """Return 2.4.4's complete 416 answer (text/plain body), plus ``Content-Range: bytes
    */size`` so the client learns the size."""
    headers = [*extra_headers, ("Content-Range", f"bytes */{size}")]
    head = render_head(416, "text/plain; charset=utf-8", server_id=server_id, now=now,
                       headers=headers)
    return head + RANGE_REFUSED_BODY
