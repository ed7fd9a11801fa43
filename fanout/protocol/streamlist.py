"""The master's mount list (PROTOCOL.md §1.3, §1.4, §1.8): parse it as a slave, render it
as a master. Sans-IO: bytes in, dataclasses out; renderers return bytes.

Two dialects share one parser: Icecast 2.4.4's `/admin/streamlist.txt` lists `/mount`
lines; Icecast-KH's `/admin/streams` lists `/admin/streams?mount=/mount` lines, where the
line itself is what the slave fetches. Anything else (full URLs, garbage, over-long lines,
names that are not valid mount paths) is skipped and counted, with the reasons of the
first few kept for one summary: a master can never make the slave crash, one bad line
costs only that line, and a body of junk costs one log line, not one per line. Only the
first MAX_LINES lines are read (work and memory per poll are bounded by it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import validate_mount_path
from fanout.protocol.mount_name import MAX_MOUNT_BYTES, mount_name_bytes
from fanout.protocol.text import from_wire, to_wire

# Longest line accepted (bytes, without CRLF): 2.4.4 reads lines into 256 bytes.
MAX_LINE = 255
# Lines of one list read at most: twice the mounts a slave relays per master
# (fanout.relay.poller.MAX_RELAYED_MOUNTS), so junk and duplicates leave room for them;
# parsing this many takes well under a tenth of a second.
MAX_LINES = 10_000
# Skipped lines whose reason is kept for the summary (the rest are only counted).
SKIP_EXAMPLES = 3
# KH's per-mount fetch path prefix (`/admin/streams?mount=/x`).
KH_FETCH_PREFIX = "/admin/streams?mount="
_FORBIDDEN = frozenset(range(0x21)) | {0x7F}  # controls and space (2.4.4 skips a line with a space)


@dataclass(frozen=True, slots=True)
class ListedMount:
    """One mount offered by the master: the local name and the request-URI to fetch it."""

    mount: str
    fetch_path: str


@dataclass(frozen=True, slots=True)
class StreamList:
    mounts: tuple[ListedMount, ...]
    skipped: int = 0  # lines that were not a usable mount
    examples: tuple[str, ...] = ()  # "line N: why" for the first SKIP_EXAMPLES of them
    truncated: bool = False  # the body had more than the lines read; the rest was ignored


def parse_streamlist(body: bytes, max_lines: int = MAX_LINES) -> StreamList:
    """Return the mounts listed in the first `max_lines` lines of a stream-list body
    (either dialect), in order, once each.

    Never raises: a line that is not a usable mount is counted in ``skipped``."""
    *lines, rest = body.split(b"\n", max_lines)
    if len(lines) < max_lines:  # fewer lines than the limit: the last one is a line too
        lines, rest = [*lines, rest], b""
    mounts: dict[str, ListedMount] = {}
    skipped, examples = 0, list[str]()
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip(b"\r")
        if not line:
            continue
        entry, problem = parse_line(line)
        if entry is None:
            skipped += 1
            if len(examples) < SKIP_EXAMPLES:
                examples.append(f"line {number}: {problem}")
        elif entry.mount not in mounts:
            mounts[entry.mount] = entry
    return StreamList(tuple(mounts.values()), skipped, tuple(examples), truncated=bool(rest))


def parse_line(line: bytes) -> tuple[ListedMount | None, str]:
    """One body line (no line end) → (entry, "") or (None, why it was skipped)."""
    if len(line) > MAX_LINE:
        return None, f"longer than {MAX_LINE} bytes"
    if any(byte in _FORBIDDEN for byte in line):
        return None, "contains a space or control character"
    text = from_wire(line)  # a mount's identity is its bytes, UTF-8 or not
    if not text.startswith("/"):
        return None, f"does not start with '/': {text[:40]!r}"
    try:
        parts = urlsplit(text)
    except ValueError:  # "//[x": urlsplit reads an unclosed IPv6 host and raises
        return None, f"not a URL path: {text[:40]!r}"
    if text.startswith(KH_FETCH_PREFIX):
        return _checked(dict(parse_qsl(parts.query)).get("mount", ""), fetch_path=text)
    return _checked(unquote(parts.path, errors="surrogateescape"), fetch_path=None)


def _checked(mount: str, fetch_path: str | None) -> tuple[ListedMount | None, str]:
    if any(ord(char) < 0x20 or char == "\x7f" for char in mount):  # percent-encoded CR LF…
        return None, f"control character in the mount name: {mount[:40]!r}"
    # The name is decoded: it must pass the checks a source's mount passes (no dot or
    # empty segments), or it would reach our relay request line and the logs.
    try:
        validate_mount_path(mount)
    except ProtocolError:
        return None, f"not a mount path: {mount[:40]!r}"
    if mount == "/" or "\\" in mount or mount.startswith("/admin/"):
        return None, f"not a mount path: {mount[:40]!r}"
    if mount_name_bytes(mount) > MAX_MOUNT_BYTES:  # the registry would refuse it on every poll
        return None, f"a mount name longer than {MAX_MOUNT_BYTES} bytes: {mount[:40]!r}"
    return ListedMount(mount, fetch_path or mount), ""


def render_streamlist(mounts: Iterable[str]) -> bytes:
    """The 2.4.4 body: one raw mount name per CRLF line, byte-wise sorted.

    A byte format: each name is written as the exact bytes it is known by (``to_wire``),
    so a slave asks for exactly that mount, whatever bytes it holds."""
    return b"".join(name + b"\r\n" for name in sorted(map(to_wire, mounts)))


def render_kh_streams(mounts: Iterable[str]) -> bytes:
    """The KH `/admin/streams` body: one `/admin/streams?mount=/x` per CRLF line (bytes,
    as ``render_streamlist``)."""
    prefix = to_wire(KH_FETCH_PREFIX)
    return b"".join(prefix + name + b"\r\n" for name in sorted(map(to_wire, mounts)))
