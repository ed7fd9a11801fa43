"""Pure-Python twin of the compiled ingest (fanout._ingest): same names, same ring result.

It is the sans-IO parser of fanout/model/ingest.py (the oracle) applied to a ring through
the ring's public API, and it is what FANOUT_CORE=python runs (see fanout/core.py). The
tests feed both the same chunkings and compare the rings they wrote.

Both implementations cut their input the same way, so that they see the same chunks:
a feed is processed in pieces of at most GUARD minus the bytes held back (an incomplete
Ogg page, already in the ring's data area but not yet published), because the writer may
never run more than GUARD bytes ahead of the write_seq it published; `feed_fd` reads one
such piece per read(2).

Publication is the ring's: `Ring.write` publishes write_seq after each piece of at most
GUARD bytes (fanout/coreref.py's `_publish`, the twin of ring_publish in _core/_core.pxd,
whose comment gives the ordering argument: the release store, then a fence before the next
piece's bytes) and rings the doorbells of the workers waiting for the ring, if it has any.
This twin writes only whole published pieces; the compiled ingest places bytes in the data
area before publishing them, so there the fence also covers its read(2) into the ring.
"""
from __future__ import annotations

import os
import select
import time
from dataclasses import dataclass
from typing import Any

from fanout.model.ingest import DEFAULT_MIN_SYNC_GAP, UNLOCKED_FALLBACK, IngestChunk
from fanout.model.ingest import Ingest as IngestParser
from fanout.model.ogg import MAX_HEADER_PAGES, MAX_HEADER_SET, MAX_LINK_STREAMS, ogg_crc

__all__ = [
    "GUARD", "READ_EOF", "READ_AGAIN", "FEED_FD_MAX", "EVENT_TITLE", "EVENT_HEADERS",
    "EVENT_SKIPPED", "MAX_HEADER_SET", "MAX_HEADER_PAGES", "MAX_LINK_STREAMS",
    "UNLOCKED_FALLBACK", "DEFAULT_MIN_SYNC_GAP", "ogg_crc", "Ingest",
    "FeedPoll", "POLL_BATCH", "FEED_EOF", "FEED_ERROR", "FEED_EVENTS", "FEED_PACED", "FEED_IDLE",
]

GUARD = 65536
READ_EOF = 0  # feed_fd: the peer closed (nothing was read)
READ_AGAIN = -1  # feed_fd: nothing to read now (EAGAIN)
# feed_fd reads at most about this many bytes per call, so the caller's loop gets a turn.
FEED_FD_MAX = GUARD

EVENT_TITLE = 1  # payload: an upstream ICY block's payload (length byte removed)
EVENT_HEADERS = 2  # payload: a new Ogg link's header set, now published
EVENT_SKIPPED = 3  # payload: why a link's header set was skipped (ASCII)

POLL_BATCH = 256  # FeedPoll.service: ready sockets handled per epoll wait

# What a member needs from Python (FeedPoll.take's `flags`), once set until taken.
FEED_EOF = 1  # the peer closed (the socket is out of the set)
FEED_ERROR = 2  # read(2) failed (`err` has the errno; out of the set)
FEED_EVENTS = 4  # the ingest queued events (take_events)
FEED_PACED = 8  # it read its pace limit this window (out of the set: rearm)
FEED_IDLE = 16  # nothing read for its timeout (FeedPoll.sweep)


class Ingest:
    """Writes a source's or relay's bytes into `ring`: audio, sync points, Ogg header sets.

    `fmt` is an ingest format ("ogg", "mpeg", "adts", "generic"); `icy_metaint` the
    upstream's interval of inline ICY blocks (0: none). Raises ValueError for an unknown
    format. What Python must act on is queued as events (`take_events`).
    """

    def __init__(self, ring: Any, fmt: str, *, min_sync_gap: int = DEFAULT_MIN_SYNC_GAP,
                 icy_metaint: int = 0) -> None:
        self._parser = IngestParser(fmt, min_sync_gap=min_sync_gap, icy_metaint=icy_metaint)
        self._ring = ring
        self._events: list[tuple[int, bytes]] = []
        self._closed = False

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Ingest `data`; return its length."""
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            piece = bytes(view[done:done + self._room()])
            self._apply(self._parser.feed(piece))
            done += len(piece)
        return done

    def feed_fd(self, fd: int, max_bytes: int = FEED_FD_MAX) -> int:
        """Read the non-blocking `fd` into the ring until it has nothing more now (a short
        read), or about `max_bytes` were read. Returns the bytes read, READ_AGAIN if there
        were none to read, READ_EOF if the peer closed. Raises OSError as read(2) fails."""
        total = 0
        while total < max_bytes:
            size = self._room()
            try:
                data = os.read(fd, size)
            except BlockingIOError:
                return total or READ_AGAIN
            if data:
                self._apply(self._parser.feed(data))
            total += len(data)
            if len(data) < size:
                break
        return total

    def take_events(self) -> list[tuple[int, bytes]]:
        """The events since the last call, in order: (EVENT_*, payload)."""
        events, self._events = self._events, []
        return events

    def close(self) -> None:
        """Stop writing to the ring. Idempotent; later feeds raise ValueError."""
        self._closed = True

    def _room(self) -> int:
        if self._closed:
            raise ValueError("ingest is closed")
        return GUARD - self._parser.held

    def _apply(self, chunk: IngestChunk) -> None:
        """Bytes first, then each link's header set, then the sync points: a listener
        joining in between never starts past write_seq nor before its header's link."""
        ring = self._ring
        base = ring.write_seq
        self._events += [(EVENT_TITLE, title) for title in chunk.titles]
        self._events += [(EVENT_SKIPPED, reason.encode()) for reason in chunk.skipped]
        if chunk.data:
            ring.write(chunk.data)
        for link in chunk.headers:
            ring.set_stream_header(link.pages, base + link.offset)
            self._events.append((EVENT_HEADERS, link.pages))
        for offset in chunk.sync_offsets:
            ring.add_sync_point(base + offset)


@dataclass
class _Member:
    ingest: Ingest
    fd: int
    idle_ns: int
    pace_bytes: int
    pace_ns: int
    last_data: int
    window_start: int
    armed: bool = False
    count: int = 0
    flags: int = 0
    err: int = 0
    window_bytes: int = 0


class FeedPoll:
    """Every socket a process's feeds read, in one epoll set: `service` reads each ready
    socket into its Ingest and returns only the fds whose owner must act (the peer closed,
    a read failed, the ingest queued events, a pace limit was reached); `sweep` flags the
    members silent for their idle timeout. The compiled one does this without a Python
    call per read; this twin has its rules."""

    def __init__(self) -> None:
        self._epoll: select.epoll | None = select.epoll()
        self._members: dict[int, _Member] = {}

    def close(self) -> None:
        """Close the epoll set (idempotent); the members' sockets stay open."""
        self._members = {}
        if self._epoll is not None:
            self._epoll.close()
            self._epoll = None

    def fileno(self) -> int:
        """The epoll fd: readable while a member has something to read."""
        return -1 if self._epoll is None else self._epoll.fileno()

    def __len__(self) -> int:
        return len(self._members)

    def add(self, fd: int, ingest: Ingest, *, idle: float = 0.0, pace_bytes: int = 0,
            pace_window: float = 0.0) -> None:
        """Read the non-blocking `fd` into `ingest` whenever it is readable (see the
        compiled FeedPoll.add)."""
        if fd in self._members:
            raise ValueError(f"fd {fd} is already in the poll")
        now = time.monotonic_ns()
        member = _Member(ingest, fd, int(idle * 1e9), pace_bytes, int(pace_window * 1e9),
                         now, now)
        self._arm(member)
        self._members[fd] = member

    def remove(self, fd: int) -> None:
        """Forget `fd` (idempotent); it stays open."""
        member = self._members.pop(fd, None)
        if member is not None:
            self._disarm(member)

    def rearm(self, fd: int) -> None:
        """Read a paced member again, with a fresh pace window."""
        member = self._members[fd]
        member.window_start, member.window_bytes = time.monotonic_ns(), 0
        if not member.armed and not member.flags & (FEED_EOF | FEED_ERROR):
            self._arm(member)

    def take(self, fd: int) -> tuple[int, int, int]:
        """(bytes read, FEED_* flags, errno) since the last take, and reset them."""
        member = self._members[fd]
        result = (member.count, member.flags, member.err)
        member.count = member.flags = member.err = 0
        return result

    def silent(self, fd: int) -> float:
        """Seconds since `fd` last gave bytes (or was added)."""
        return (time.monotonic_ns() - self._members[fd].last_data) / 1e9

    def service(self) -> list[int]:
        """Read every ready member into its ingest; the fds newly needing their owner."""
        out: list[int] = []
        if self._epoll is None:
            return out
        ready = self._epoll.poll(0, POLL_BATCH)
        while ready:
            for fd, _ in ready:
                self._read(fd, out)
            ready = self._epoll.poll(0, POLL_BATCH) if len(ready) == POLL_BATCH else []
        return out

    def sweep(self) -> list[int]:
        """Flag FEED_IDLE on the members silent for their idle timeout (reading what is
        ready first); the fds newly needing their owner."""
        out = self.service()
        now = time.monotonic_ns()
        for member in self._members.values():
            if member.idle_ns and member.armed and now - member.last_data >= member.idle_ns:
                self._flag(member, FEED_IDLE, out)
        return out

    def _read(self, fd: int, out: list[int]) -> None:
        member = self._members.get(fd)
        if member is None or not member.armed:
            return
        try:
            count = member.ingest.feed_fd(fd)
        except OSError as exc:
            member.err = exc.errno or 0
            self._disarm(member)
            self._flag(member, FEED_ERROR, out)
            return
        if count == READ_AGAIN:
            return
        if count == READ_EOF:
            self._disarm(member)
            self._flag(member, FEED_EOF, out)
            return
        now = time.monotonic_ns()
        member.count += count
        member.last_data = now
        if member.ingest._events:
            self._flag(member, FEED_EVENTS, out)
        if member.pace_bytes:
            if now - member.window_start >= member.pace_ns:
                member.window_start, member.window_bytes = now, 0
            member.window_bytes += count
            if member.window_bytes >= member.pace_bytes:
                self._disarm(member)
                self._flag(member, FEED_PACED, out)

    @staticmethod
    def _flag(member: _Member, flag: int, out: list[int]) -> None:
        if not member.flags:
            out.append(member.fd)
        member.flags |= flag

    def _arm(self, member: _Member) -> None:
        assert self._epoll is not None, "the poll is closed"
        self._epoll.register(member.fd, select.EPOLLIN)
        member.armed = True

    def _disarm(self, member: _Member) -> None:
        if member.armed and self._epoll is not None:
            try:
                self._epoll.unregister(member.fd)
            except OSError:
                pass  # the fd was closed first: epoll dropped it itself
            member.armed = False
