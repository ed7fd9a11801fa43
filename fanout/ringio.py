"""The one write path into a ring: every source and relay pull streams through a `RingFeed`;
a relay's new connection that continues a ring is first spliced onto it (`splice`).

Theory of operation. A `RingFeed` wraps the ingest chosen by fanout/core.py (the compiled
fanout._ingest in production). The ingest does all the per-byte work itself: it reads the
socket straight into the ring, strips upstream ICY blocks, finds frames and Ogg pages,
publishes the bytes, the sync points and each Ogg link's header set. A process has one
waiting point for all its feeds' sockets (issue 13): the `FeedHub`, an epoll set
(core.FeedPoll) watched by the hub, reads every ready socket into its ingest in C.
The feed's greenlet (in `read`) is woken only when its owner must act: the peer closed, a
read failed, a pace limit was reached, the socket stayed silent for its timeout, or the
ingest queued events - an upstream title (handed to `on_title`), a new Ogg header set
(kept as `header_set`, its comments parsed on demand), a link whose header set was
skipped because it broke a bound (one warning per feed; later ones are only counted) -
or when the owner's own deadline (`until`) passed. A steady stream so costs no Python
call and no greenlet switch per read. A TLS socket is read by its greenlet (its records
must be decrypted in Python's ssl).

Splicing. When a relay reconnects to an upstream (or another worker's pull takes a mount
over), the new connection starts with the upstream's burst, which usually repeats the
last bytes already in the ring. `splice` reads that start (for at most SPLICE_WAIT s and
SPLICE_MAX bytes), strips its ICY blocks, and looks for the ring's last SPLICE_TAIL bytes
in it: found, what follows them is exactly what the ring lacks, and listeners hear no gap
and no repeat. The raw bytes are cut after their last whole ICY block, so the rest of the
connection starts at a metadata interval, where a new `RingFeed` strips ICY as usual.
"""
from __future__ import annotations

import logging
import math
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import gevent
from gevent.event import Event
from gevent.hub import get_hub
from gevent.socket import socket as GeventSocket

from fanout import core, supervised, tls
from fanout.model.comments import link_comments
from fanout.protocol.icy import IcyStripper

log = logging.getLogger("fanout.ingest")

# Bytes at the end of a ring looked for in a new connection's first bytes: a frame or
# more of audio, so a match is the same stream, not a coincidence.
SPLICE_TAIL = 4096
# How long (s) and how much (bytes, ICY blocks included) of a new connection is read
# looking for them: an upstream sends its burst at once, so this is spent (and the
# listeners wait that much longer) only when the new stream does not overlap the ring.
SPLICE_WAIT = 0.5
SPLICE_MAX = 1 << 20
# Bytes per read while splicing.
SPLICE_READ = 65536
# Bytes of an ICY block per unit of its length byte.
ICY_UNIT = 16
# Seconds between two sweeps of a process's feeds (FeedHub): an idle source is found, and
# a feed's owner gets its turn back (`until`), at most this late.
SWEEP_INTERVAL = 0.5


class RingFeed:
    """A source's or relay pull's byte stream into `ring`, as ingest format `fmt`.

    `label` starts this feed's log lines (e.g. "127.0.0.1: source on /live.ogg");
    `icy_metaint` is the upstream's interval of inline ICY blocks (0: none) and
    `on_title` receives each block's payload. `pace` (bytes, seconds): read at most that
    many bytes per that long from the socket (the process's FeedHub stops reading it
    meanwhile). Raises ValueError for an unknown format.
    """

    def __init__(self, ring: core.Ring, fmt: str, *, label: str, icy_metaint: int = 0,
                 on_title: Callable[[bytes], None] | None = None,
                 pace: tuple[int, float] = (0, 0.0)) -> None:
        self.ingest = core.Ingest(ring, fmt, icy_metaint=icy_metaint)
        self.label = label
        self.on_title = on_title
        self.pace = pace
        self.header_set: bytes | None = None  # the newest Ogg link's header pages
        self.skipped_links = 0  # Ogg links whose header set broke a bound
        self.polled = False  # its socket is read by the FeedHub (paced there too)
        self.until = math.inf  # read() returns by this time.monotonic() at the latest
        self._hub: FeedHub | None = None
        self._fd = -1
        self._woken = Event()
        self._eof = False

    def feed(self, data: bytes) -> int:
        """Ingest bytes the caller already has (e.g. read together with the request head,
        or decoded from a chunked body); returns their length."""
        if data:
            self.ingest.feed(data)
            self._handle(self.ingest.take_events())
        return len(data)

    def read(self, sock: GeventSocket, until: float = math.inf) -> int | None:
        """Read what the (gevent, non-blocking) `sock` sends into the ring, returning when
        its owner must act: the bytes read since the last call (0 if none: `until`
        passed, or `wake` was called), or None once the peer closed.

        The socket is read by this process's FeedHub, in C, without waking this greenlet
        per read. Raises socket.timeout when the socket had nothing to read for its
        timeout, OSError as it fails.
        """
        if tls.is_tls(sock):  # issue 12: its fd holds TLS records
            return self.feed(sock.recv(core.FEED_FD_MAX)) or None
        if self._eof:
            return None
        if self._hub is None:
            self._fd = sock.fileno()
            self._hub = FeedHub.current()
            self._hub.join(self, self._fd, sock.gettimeout() or 0.0)
            self.polled = True
        self.until = until
        self._woken.wait()
        self._woken.clear()
        count, flags, err = self._hub.poll.take(self._fd)
        if flags & core.FEED_EVENTS:
            self._handle(self.ingest.take_events())
        if flags & core.FEED_ERROR:
            raise OSError(err, os.strerror(err))
        if flags & core.FEED_EOF:
            self._eof = True
            return count or None
        if flags & core.FEED_IDLE and not count:
            raise socket.timeout("timed out")
        if flags & core.FEED_PACED:
            gevent.sleep(self.pace[1])
            self._hub.poll.rearm(self._fd)
        return count

    def wake(self) -> None:
        """Make a waiting `read` return (with what was read so far)."""
        self._woken.set()

    @property
    def comments(self) -> list[tuple[str, str]]:
        """The (KEY, value) comments of the newest Ogg link (TITLE, ARTIST...), for stats."""
        return link_comments(self.header_set) if self.header_set else []

    def close(self) -> None:
        """Leave the FeedHub and release the ingest's view of the ring (idempotent). Call
        it before closing the socket: its fd number may be reused at once."""
        hub, self._hub = getattr(self, "_hub", None), None
        if hub is not None:
            hub.leave(self._fd)
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


class FeedHub:
    """This process's one waiting point for the sockets of every RingFeed (issue 13).

    One io watcher on a core.FeedPoll (an epoll set of the sockets): when any is
    readable, `service` reads every ready one straight into its ring, in C, and only the
    feeds that must act (closed, failed, events queued, pace limit reached) are woken. A
    timer every SWEEP_INTERVAL flags the idle ones and wakes those whose `until` passed.
    Both run in the hub as callbacks, never a greenlet per read; with no feed they are
    stopped, so an idle process pays nothing. One per hub (`current`).
    """

    _current: FeedHub | None = None

    @classmethod
    def current(cls) -> FeedHub:
        """The FeedHub of this thread's gevent hub (made on first use)."""
        hub = get_hub()
        if cls._current is None or cls._current.hub is not hub:
            cls._current = cls(hub)
        return cls._current

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.poll = core.FeedPoll()
        self._feeds: dict[int, RingFeed] = {}
        self._io = hub.loop.io(self.poll.fileno(), 1)
        self._sweep = hub.loop.timer(SWEEP_INTERVAL, SWEEP_INTERVAL)

    def join(self, feed: RingFeed, fd: int, idle: float) -> None:
        """Read `fd` into `feed`'s ingest from now on; `idle`: its silence timeout (s)."""
        self.poll.add(fd, feed.ingest, idle=idle, pace_bytes=feed.pace[0],
                      pace_window=feed.pace[1])
        self._feeds[fd] = feed
        if len(self._feeds) == 1:
            self._io.start(self._on_ready)
            self._sweep.start(self._on_sweep)

    def leave(self, fd: int) -> None:
        self.poll.remove(fd)
        self._feeds.pop(fd, None)
        if not self._feeds:
            self._io.stop()
            self._sweep.stop()

    def _on_ready(self) -> None:
        try:
            self._wake(self.poll.service())
        except Exception:  # a hub callback: report, and the next readiness tries again
            supervised.report("worker.feedpoll")

    def _on_sweep(self) -> None:
        try:
            self._wake(self.poll.sweep())
            now = time.monotonic()
            for feed in self._feeds.values():
                if feed.until <= now:
                    feed.wake()
        except Exception:
            supervised.report("worker.feedpoll")

    def _wake(self, fds: list[int]) -> None:
        for fd in fds:
            feed = self._feeds.get(fd)
            if feed is not None:
                feed.wake()


@dataclass(frozen=True, slots=True)
class Splice:
    """How a new connection's stream continues a ring (`splice`)."""

    found: bool  # it repeats the ring's last bytes: `audio` continues them exactly
    overlap: int  # bytes of the new stream that were already in the ring (dropped)
    audio: bytes  # stream bytes (ICY blocks removed) to write into the ring first
    titles: list[bytes] = field(default_factory=list)  # payloads of the ICY blocks among them
    rest: bytes = b""  # raw bytes read past the last whole ICY block (a metaint starts there)


def splice(ring: core.Ring, sock: GeventSocket, first: bytes, metaint: int, *,
           ogg: bool = False) -> Splice:
    """Read the start of a new connection (`first`: the body bytes read with its head;
    `metaint`: its ICY interval) and find where it continues `ring`. An Ogg ring may only
    be continued exactly (pages of two streams cannot be joined), and Ogg with inline ICY
    not at all. Raises OSError as the socket fails."""
    end = ring.write_seq
    tail = ring.read(end - min(end, SPLICE_TAIL), min(end, SPLICE_TAIL))
    raw, deadline = bytearray(first), time.monotonic() + SPLICE_WAIT
    while True:
        cut = whole_blocks(raw, metaint)
        audio, titles = IcyStripper(metaint).feed(bytes(raw[:cut]))
        after = _after(tail, IcyStripper(metaint).feed(bytes(raw))[0], ogg and metaint > 0)
        if after is not None and after <= len(audio):
            return Splice(True, after, audio[after:], titles, bytes(raw[cut:]))
        if after is not None:  # found past the last whole block: read on to the next one
            deadline = time.monotonic() + (sock.gettimeout() or SPLICE_WAIT)
        more = b"" if len(raw) >= SPLICE_MAX else _read_until(sock, deadline)
        if not more:
            return Splice(False, 0, audio, titles, bytes(raw[cut:]))
        raw += more


def _after(tail: bytes, audio: bytes, never: bool) -> int | None:
    """Where `audio` goes on past the first copy of `tail` in it; None if it has none."""
    at = -1 if never or not tail else audio.find(tail)
    return None if at < 0 else at + len(tail)


def whole_blocks(raw: bytes | bytearray, metaint: int) -> int:
    """How many bytes of `raw` (a body with an ICY block after every `metaint` bytes of
    audio, from its start) end with a whole block; all of them if there are no blocks."""
    if not metaint:
        return len(raw)
    pos = 0
    while pos + metaint < len(raw):
        block_end = pos + metaint + 1 + ICY_UNIT * raw[pos + metaint]
        if block_end > len(raw):
            break
        pos = block_end
    return pos


def _read_until(sock: GeventSocket, deadline: float) -> bytes:
    """What `sock` sends before `deadline` (b"" if nothing, or it closed)."""
    timeout = sock.gettimeout()
    sock.settimeout(max(0.0, deadline - time.monotonic()))
    try:
        data: bytes = sock.recv(SPLICE_READ)
        return data
    except socket.timeout:
        return b""
    finally:
        sock.settimeout(timeout)
