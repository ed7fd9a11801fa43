"""The master's mount list (PROTOCOL.md §1.3, §1.4, §1.8): parse it as a slave, render it
as a master. Sans-IO: bytes in, dataclasses out; renderers return bytes.

Two dialects share one parser: Icecast 2.4.4's `/admin/streamlist.txt` lists `/mount`
lines; Icecast-KH's `/admin/streams` lists `/admin/streams?mount=/mount` lines, where the
line itself is what the slave fetches. Anything else (full URLs, garbage, over-long lines,
names that are not valid mount paths) is skipped with a warning: a master can never make
the slave crash, and one bad line costs only that line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

from fanout.protocol.text import from_wire, to_wire

# Longest line accepted (bytes, without CRLF): 2.4.4 reads lines into 256 bytes.
MAX_LINE = 255
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
    warnings: tuple[str, ...]


def parse_streamlist(body: bytes) -> StreamList:
    """Return the mounts listed in a stream-list body (either dialect), in order, once each.

    Never raises: a line that is not a usable mount is reported in ``warnings``."""
    mounts: dict[str, ListedMount] = {}
    warnings: list[str] = []
    for number, raw in enumerate(body.split(b"\n"), 1):
        line = raw.rstrip(b"\r")
        if not line:
            continue
        entry, problem = parse_line(line)
        if entry is None:
            warnings.append(f"stream list line {number} skipped: {problem}")
        elif entry.mount not in mounts:
            mounts[entry.mount] = entry
    return StreamList(tuple(mounts.values()), tuple(warnings))


def parse_line(line: bytes) -> tuple[ListedMount | None, str]:
    """One body line (no line end) → (entry, "") or (None, why it was skipped)."""
    if len(line) > MAX_LINE:
        return None, f"longer than {MAX_LINE} bytes"
    if any(byte in _FORBIDDEN for byte in line):
        return None, "contains a space or control character"
    text = from_wire(line)  # a mount's identity is its bytes, UTF-8 or not
    if not text.startswith("/"):
        return None, f"does not start with '/': {text[:40]!r}"
    if text.startswith(KH_FETCH_PREFIX):
        mount = dict(parse_qsl(urlsplit(text).query)).get("mount", "")
        return _checked(mount, fetch_path=text)
    return _checked(unquote(urlsplit(text).path, errors="surrogateescape"), fetch_path=None)


def _checked(mount: str, fetch_path: str | None) -> tuple[ListedMount | None, str]:
    if not mount.startswith("/") or mount == "/" or "\\" in mount or "/../" in mount + "/":
        return None, f"not a mount path: {mount[:40]!r}"
    if mount.startswith("/admin/"):
        return None, f"not a mount path: {mount[:40]!r}"
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
