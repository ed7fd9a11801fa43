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
from typing import Any

from fanout.model.ingest import DEFAULT_MIN_SYNC_GAP, UNLOCKED_FALLBACK, IngestChunk
from fanout.model.ingest import Ingest as IngestParser
from fanout.model.ogg import MAX_HEADER_PAGES, MAX_HEADER_SET, MAX_LINK_STREAMS, ogg_crc

__all__ = [
    "GUARD", "READ_EOF", "READ_AGAIN", "FEED_FD_MAX", "EVENT_TITLE", "EVENT_HEADERS",
    "EVENT_SKIPPED", "MAX_HEADER_SET", "MAX_HEADER_PAGES", "MAX_LINK_STREAMS",
    "UNLOCKED_FALLBACK", "DEFAULT_MIN_SYNC_GAP", "ogg_crc", "Ingest",
]

GUARD = 65536
READ_EOF = 0  # feed_fd: the peer closed (nothing was read)
READ_AGAIN = -1  # feed_fd: nothing to read now (EAGAIN)
# feed_fd reads at most about this many bytes per call, so the caller's loop gets a turn.
FEED_FD_MAX = GUARD

EVENT_TITLE = 1  # payload: an upstream ICY block's payload (length byte removed)
EVENT_HEADERS = 2  # payload: a new Ogg link's header set, now published
EVENT_SKIPPED = 3  # payload: why a link's header set was skipped (ASCII)


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
