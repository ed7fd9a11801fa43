"""The one write path into a ring: every source and relay pull streams through a `RingFeed`.

Theory of operation. A `RingFeed` wraps the ingest chosen by fanout/core.py (the compiled
fanout._ingest in production). The ingest does all the per-byte work itself: it reads the
socket straight into the ring, strips upstream ICY blocks, finds frames and Ogg pages,
publishes the bytes, the sync points and each Ogg link's header set. Python runs once per
wake-up of the caller's greenlet (`read`: wait until the socket is readable, then one
`feed_fd` call), plus once per event the ingest queued: an upstream title (handed to
`on_title`), a new Ogg header set (kept as `header_set`, its comments parsed on demand),
a link whose header set was skipped because it broke a bound (one warning per feed;
later ones are only counted).
"""
from __future__ import annotations

import logging
import socket
from typing import Callable

from gevent.hub import get_hub
from gevent.socket import socket as GeventSocket
from gevent.socket import wait

from fanout import core, tls
from fanout.model.comments import link_comments

log = logging.getLogger("fanout.ingest")


class RingFeed:
    """A source's or relay pull's byte stream into `ring`, as ingest format `fmt`.

    `label` starts this feed's log lines (e.g. "127.0.0.1: source on /live.ogg");
    `icy_metaint` is the upstream's interval of inline ICY blocks (0: none) and
    `on_title` receives each block's payload. Raises ValueError for an unknown format.
    """

    def __init__(self, ring: core.Ring, fmt: str, *, label: str, icy_metaint: int = 0,
                 on_title: Callable[[bytes], None] | None = None) -> None:
        self.ingest = core.Ingest(ring, fmt, icy_metaint=icy_metaint)
        self.label = label
        self.on_title = on_title
        self.header_set: bytes | None = None  # the newest Ogg link's header pages
        self.skipped_links = 0  # Ogg links whose header set broke a bound
        self._watcher: object | None = None  # the hub's io watcher of the socket, once read
        self._drained = False  # the last read emptied the socket: wait before reading

    def feed(self, data: bytes) -> int:
        """Ingest bytes the caller already has (e.g. read together with the request head,
        or decoded from a chunked body); returns their length."""
        if data:
            self.ingest.feed(data)
            self._handle(self.ingest.take_events())
        return len(data)

    def read(self, sock: GeventSocket) -> int:
        """Wait until the (gevent) `sock` is readable, then read what it has into the ring.

        Returns the bytes read, 0 once the peer closed. Raises socket.timeout when the
        socket had nothing to read for its timeout, OSError as the socket fails.
        """
        if tls.is_tls(sock):  # issue 12: its fd holds TLS records
            return self.feed(sock.recv(core.FEED_FD_MAX))
        fd = sock.fileno()
        count = core.READ_AGAIN if self._drained else self.ingest.feed_fd(fd)
        while count == core.READ_AGAIN:
            count = self._read_when_readable(sock, fd)
        self._drained = count < core.FEED_FD_MAX
        events = self.ingest.take_events()
        if events:
            self._handle(events)
        return count

    def _read_when_readable(self, sock: GeventSocket, fd: int) -> int:
        """One feed_fd once `sock` is readable; socket.timeout if it stayed idle."""
        if self._watcher is None:
            self._watcher = get_hub().loop.io(fd, 1)
        try:
            wait(self._watcher, sock.gettimeout())
        except socket.timeout:
            # The timer is the hub's, and the hub may not have run for a while (the
            # process was stopped): idle only if the socket has nothing now either.
            count = self.ingest.feed_fd(fd)
            if count == core.READ_AGAIN:
                raise
            return count
        return self.ingest.feed_fd(fd)

    @property
    def comments(self) -> list[tuple[str, str]]:
        """The (KEY, value) comments of the newest Ogg link (TITLE, ARTIST...), for stats."""
        return link_comments(self.header_set) if self.header_set else []

    def close(self) -> None:
        """Release the socket watcher and the ingest's view of the ring (idempotent)."""
        watcher, self._watcher = getattr(self, "_watcher", None), None
        if watcher is not None:
            watcher.close()
        if hasattr(self, "ingest"):  # not if the constructor failed
            self.ingest.close()

    def __del__(self) -> None:  # callers may just drop it when their stream ends
        self.close()

    def _handle(self, events: list[tuple[int, bytes]]) -> None:
        for kind, payload in events:
            if kind == core.EVENT_TITLE and self.on_title is not None:
                self.on_title(payload)
            elif kind == core.EVENT_HEADERS:
                self.header_set = payload
            elif kind == core.EVENT_SKIPPED:
                self._skipped(payload.decode("ascii"))

    def _skipped(self, reason: str) -> None:
        self.skipped_links += 1
        if self.skipped_links == 1:  # a source doing it once will do it again: say it once
            log.warning("%s: Ogg header pages skipped (%s); listeners joining in that link "
                        "get no header pages", self.label, reason)
