"""One relay pull (PROTOCOL.md §1.7, §3.2–3.5, §3.8): a greenlet in the worker the
supervisor chose for it (`fanout/supervisor/relays.py`), fetching a mount from an upstream
and writing it into the mount's ring as a source would.

Theory of operation: `run` loops over attempts. An attempt connects, sends the relay
request, follows up to MAX_REDIRECTS `302`s and reads the response head; only a 2xx makes
the pull claim the mount, as its worker's source would (so the mount is 404 on this
server while the upstream is away, as in Icecast 2.4.4, and the listeners get a head
built from the upstream's). The stream then goes through the one ingest path
(`fanout.ringio`): ICY blocks are stripped and each changed title is re-served
byte-identical through the supervisor (`Metadata`). The pull's state and stats go to the
supervisor (`RelayStatus`, `RelayStream`), which puts them in the mount's info for every
worker. When the stream ends the mount is released and `RelayEnded` tells a slave's
poller to re-ask its master. The next attempt waits a bounded exponential backoff;
`retry_now` cuts it short. An attempt tries the spec's upstreams in order (a configured
`<relay>` may list several) and the first that answers 2xx is relayed; the backoff
follows only when all failed.

A stream that follows another in the same ring (a reconnect while the listeners were
held, a switch back to a preferred upstream, a pull taking over the mount of a worker
that died) is spliced (`ringio.splice`): the new connection's first bytes, the upstream's
burst, usually repeat the ring's last ones, and what they overlap is dropped, so the
listeners hear no gap and no repeat. Without an overlap a seam is marked (newcomers start
after it); an Ogg stream, whose pages cannot continue another's, ends the mount instead.
No newcomer starts before a seam: a reconnecting pull's mount takes none until the new
connection is placed, and a switch marks its seam before splicing (newcomers are let in).

A pull started with `resume` takes over a mount the supervisor held for it (its previous
pull's worker died or handed it on): it reconnects for at most the mount's
source-timeout, as after a drop, and continues the ring. A stopped pull (StopRelay) does
not release its mount: the supervisor decides that. On-demand pulls are `OnDemandPull`
(`relay_demand.py`).
"""
from __future__ import annotations

import dataclasses
import logging
import time

import gevent
from gevent import socket
from gevent.event import Event

from fanout import supervised
from fanout.httpclient import FetchError, connect, request_head
from fanout.lifecycle import RelayEvent, RelayState, next_relay_state
from fanout.messages import Metadata, RelayEnded, RelayStatus, RelayStream
from fanout.model.ingest import OGG, format_for_content_type
from fanout.mountinfo import MountInfo, RelayInfo, stream_info
from fanout.protocol.errors import ProtocolError
from fanout.protocol.icy import block_from_payload, parse_block_text
from fanout.protocol.text import decode_title
from fanout.protocol.upstream import (MAX_REDIRECTS, ResponseHead, parse_location,
                                      render_relay_request)
from fanout.relay.plan import RelaySpec
from fanout.ringio import RingFeed, splice
from fanout.worker.state import LocalMount, Worker

log = logging.getLogger("fanout.relay")

# Seconds before the first retry after a failed or ended pull; doubles per failure.
BACKOFF_FIRST = 0.5
# Longest wait between two attempts (seconds): bounded, so a returning master is seen.
BACKOFF_MAX = 30.0
# Seconds between two `bytes_read` updates of a streaming mount's RelayInfo.
STATS_INTERVAL = 5.0
# Seconds between reconnects while a dropped relay holds its listeners: doubling from the
# first to the most, so a returning upstream is picked up within about a second.
HOLD_RETRY_FIRST = 0.25
HOLD_RETRY_MAX = 1.0

Connection = tuple[socket.socket, ResponseHead, bytes]  # an upstream that answered 2xx


def backoff_delay(failures: int, longest: float = BACKOFF_MAX) -> float:
    """Seconds to wait after `failures` consecutive failed attempts (≥ 1)."""
    return float(min(longest, BACKOFF_FIRST * 2 ** max(0, failures - 1)))


class RelayPull:
    unit = "relay.pull"  # its name as a supervised unit
    check_every = STATS_INTERVAL  # seconds between two looks at `wanted` while streaming

    def __init__(self, worker: Worker, spec: RelaySpec, resume: bool = False) -> None:
        self.worker = worker
        self.spec = spec
        self.resume = resume  # take over the held mount first
        self.state = RelayState.IDLE  # moved only by `advance` (fanout.lifecycle's table)
        self.reconnects = 0
        self.bytes = 0
        self.greenlet: gevent.Greenlet | None = None
        self.stopped = False
        self.wake = Event()
        self.last_block = b""
        self.current = spec.upstreams()[0]  # the (host, port, path) tried or streaming last
        # A connection to a preferred upstream that answered while we streamed from a backup.
        self.better: tuple[socket.socket, ResponseHead, bytes, tuple[str, int, str]] | None = None
        # The last failure logged per upstream since the pull last streamed (warn_once).
        self.told: dict[tuple[str, int, str], str] = {}
        self.relay: RelayInfo | None = None  # what the supervisor was told last
        self.feed: RingFeed | None = None  # the feed `copy` reads into, while it does

    @property
    def mount(self) -> str:
        return self.spec.mount

    @property
    def upstream(self) -> str:
        host, port, path = self.current
        return f"http://{host}:{port}{path}"

    def advance(self, event: RelayEvent) -> None:
        self.state = next_relay_state(self.state, event)

    def backoff(self, failures: int) -> float:
        return backoff_delay(failures, self.spec.retry_max or BACKOFF_MAX)

    # -- what the worker's relay table calls ----------------------------------------------

    def start(self) -> None:
        self.greenlet = supervised.spawn(self.unit, self.run, restart=True)

    def stop(self) -> None:
        """Stop pulling, leaving the mount as it is (the supervisor ends or hands it on)."""
        self.stopped = True
        if self.greenlet is not None:
            self.greenlet.kill()
            self.greenlet = None

    def retry_now(self) -> None:
        """Cut a backoff wait short (the poller saw the master answer again)."""
        if self.state is RelayState.RETRYING:
            self.wake.set()

    def demanded(self) -> None:
        """Listeners wait for this relay (only an on-demand pull waits for them)."""

    # -- talking to the supervisor ------------------------------------------------------------

    def claim(self, info: MountInfo) -> LocalMount | None:
        """Claim the mount for this pull's stream, as a source does; None (told once) if
        the supervisor refuses."""
        answer = self.worker.claim(self.mount, info)
        if not answer.ok:
            self.warn_once(f"relay {self.mount}: mount refused ({answer.reason})")
            return None
        self.relay = info.relay
        if info.connected:  # a stream, not an idle on-demand mount: /admin/stats counts it
            self.worker.counters.add(self.worker.index, "source_relay_connections", 1)
        return self.worker.mounts[self.mount]

    def release(self) -> None:
        """The stream is over: end the mount (unless StopRelay stopped us: the supervisor
        decides then)."""
        if not self.stopped:
            self.worker.link.release(self.mount)

    def tell(self, message: object) -> None:
        try:
            self.worker.link.send(message)
        except OSError:
            pass  # the supervisor is gone: this worker stops

    def publish(self, **fields: object) -> None:
        """New relay fields (state, reconnects, bytes_read, connected) for the mount's info."""
        if self.relay is not None:
            self.relay = dataclasses.replace(self.relay, **fields)  # type: ignore[arg-type]
            self.tell(RelayStatus(self.mount, self.relay))

    def renew(self, info: MountInfo) -> None:
        """A new stream in the same mount: its info replaces the mount's (start kept)."""
        self.relay = info.relay
        self.tell(RelayStream(self.mount, info))

    def ended(self) -> None:
        self.tell(RelayEnded(self.mount))

    def live_fallback(self) -> str | None:
        """The first mount of this one's fallback chain that is live here, if any."""
        for name in self.worker.cfg.fallback_chain(self.mount):
            mount = self.worker.mounts.get(name)
            if mount is not None and not mount.ended:
                return name
        return None

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        self.state = RelayState.IDLE  # (re)started: no attempt under way
        failures = 0
        while True:
            try:
                streamed = self.attempt()
            except Exception:  # a bug must not leave a listed mount without a pull
                supervised.report(self.unit, self.mount)
                streamed = False
            failures = 1 if streamed else failures + 1
            self.advance(RelayEvent.BACK_OFF)
            self.ended()
            self.wake.clear()
            self.wake.wait(self.backoff(failures))
            self.reconnects += 1

    def attempt(self) -> bool:
        """One connection (or the take-over of a held mount); True if an upstream's stream
        was relayed (however briefly)."""
        opened = self.take_over() if self.resume else self.connect_and_claim()
        if opened is None:
            return False
        record, connection, event = opened
        try:
            self.relay_streams(record, connection, event)
            return True
        finally:
            self.release()

    def connect_and_claim(self) -> tuple[LocalMount, Connection, RelayEvent] | None:
        self.advance(RelayEvent.CONNECT)
        try:
            sock, head, first = self.open()
        except FetchError as exc:
            self.warn_once(f"relay {self.mount} from {self.upstream}: {exc}")
            return None
        record = self.claim(self.stream_info(head))
        if record is None:
            sock.close()
            return None
        return record, (sock, head, first), RelayEvent.STREAM

    def take_over(self) -> tuple[LocalMount, Connection, RelayEvent] | None:
        """Continue the held mount the supervisor gave this pull (a new connection and
        claim if it ended meanwhile); None if no upstream answers within its
        source-timeout: it is released then, and the pull goes on as a new one."""
        self.resume = False
        record = self.worker.mounts.get(self.mount)
        if record is None or record.ended:
            return self.connect_and_claim()
        self.relay = record.info.relay
        self.advance(RelayEvent.TAKE_OVER)
        log.info("relay %s: taking over the mount (worker %d)", self.mount, self.worker.index)
        connection = self.reconnect(record)
        if connection is None:
            self.release()
            return None
        return record, connection, RelayEvent.RESUME

    def relay_streams(self, record: LocalMount, connection: Connection,
                      event: RelayEvent) -> None:
        """Stream from `connection`, then from the ones that follow it in the same mount (a
        preferred upstream back, a reconnect while the listeners are held)."""
        sock, head, first = connection
        while True:
            log.info("relay %s from %s: streaming (%s)", self.mount, self.upstream,
                     head.content_type)
            self.told.clear()
            self.advance(event)
            prober = (supervised.spawn("relay.probe", self.probe_preferred, record, restart=False)
                      if self.on_backup() else None)
            try:
                ending = self.stream(sock, record, head, first)
            finally:
                sock.close()
                if prober is not None:
                    prober.kill()
            if self.better is not None:
                sock, head, first, self.current = self.better
                self.better = None
                self.renew(self.stream_info(head))
                event = RelayEvent.SWITCH
                continue
            # Listeners of a silent upstream have waited a source-timeout already.
            reopened = None if ending in ("silent", "unspliced") else self.reopen(record)
            if reopened is None:
                return
            sock, head, first = reopened
            event = RelayEvent.RESUME

    def warn_once(self, message: str) -> None:
        """Log why an attempt failed, unless the same upstream failed the same way last
        time: a pull retrying a broken upstream says why once, not every attempt, until
        it streamed again."""
        if self.told.get(self.current) != message:
            log.warning("%s", message)
        self.told[self.current] = message

    def reopen(self, record: LocalMount) -> Connection | None:
        """After the upstream dropped, reconnect while the mount keeps its listeners (KH
        keeps them paused, §3.11; 2.4.4 drops them at once), for at most the mount's
        source-timeout, so a restarting upstream costs them a gap, not the stream.

        Meanwhile newcomers are not served this mount (workers see its RelayInfo in state
        RECONNECTING). No hold when the listeners have somewhere to go (a live fallback
        takes them at once), for Ogg (a new stream's header pages would need a new ring), or
        when the stream comes back in another format. None when the mount must end; else
        the new connection."""
        if record.info.format == OGG or self.live_fallback():
            return None
        self.advance(RelayEvent.DROP)
        self.publish(state=RelayState.RECONNECTING)
        return self.reconnect(record)

    def reconnect(self, record: LocalMount) -> Connection | None:
        """Connect again within the mount's source-timeout while its listeners are held;
        the new connection, or None (logged) when the mount must end."""
        hold = self.worker.cfg.resolve_mount(self.mount).source_timeout
        lost, delay = time.monotonic(), HOLD_RETRY_FIRST
        log.info("relay %s: holding its listeners up to %ss while reconnecting", self.mount, hold)
        while True:
            try:
                sock, head, first = self.open()
            except FetchError as exc:
                if time.monotonic() + delay > lost + hold or self.live_fallback():
                    log.warning("relay %s from %s: %s; ending the mount", self.mount,
                                self.upstream, exc)
                    return None
                gevent.sleep(delay)
                delay = min(2 * delay, HOLD_RETRY_MAX)
                continue
            info = self.stream_info(head)
            if not same_stream_kind(info, record.info):
                log.warning("relay %s: upstream came back as %s; ending the mount", self.mount,
                            info.content_type)
                sock.close()
                return None
            self.reconnects += 1
            assert info.relay is not None
            # Still RECONNECTING to the workers: newcomers wait until `stream` has decided
            # where the new connection goes in the ring (a seam they must start after).
            self.renew(dataclasses.replace(info, relay=dataclasses.replace(
                info.relay, state=RelayState.RECONNECTING, reconnects=self.reconnects,
                bytes_read=self.bytes)))
            log.info("relay %s: upstream back after %.1f s; its listeners stayed", self.mount,
                     time.monotonic() - lost)
            return sock, head, first

    def on_backup(self) -> bool:
        """Whether this (always-on) pull streams from other than its first upstream."""
        return not self.spec.on_demand and self.current != self.spec.upstreams()[0]

    def probe_preferred(self, record: LocalMount) -> None:
        """While on a backup, try the upstreams before it every retry delay; the first
        that answers with the same kind of stream becomes `better`, and `stream` switches
        to it without ending the mount (KH re-probes higher-priority hosts, §3.11)."""
        upstreams = self.spec.upstreams()
        preferred = upstreams[:upstreams.index(self.current)]
        while self.better is None:
            gevent.sleep(self.spec.retry_max or BACKOFF_MAX)
            for upstream in preferred:
                try:
                    sock, head, first = self.open_at(*upstream)
                except FetchError:
                    continue
                if not same_stream_kind(self.stream_info(head), record.info):
                    sock.close()
                    continue
                log.info("relay %s: preferred upstream http://%s:%d%s is back; switching to it",
                         self.mount, *upstream)
                self.better = (sock, head, first, upstream)
                if self.feed is not None:
                    self.feed.wake()
                break

    def open(self) -> Connection:
        """Get a 2xx head from the first upstream that gives one; raises FetchError (the
        last upstream's) when none does."""
        *others, last = self.spec.upstreams()
        for upstream in others:
            self.current = upstream
            try:
                return self.open_at(*upstream)
            except FetchError as exc:
                self.warn_once(f"relay {self.mount} from {self.upstream}: {exc}; "
                               "trying the next upstream")
        self.current = last
        return self.open_at(*last)

    def open_at(self, host: str, port: int, path: str) -> Connection:
        """Connect and get a 2xx head, following redirects; raises FetchError."""
        tls = (host, port) in self.spec.tls_upstreams
        for _ in range(MAX_REDIRECTS + 1):
            sock = connect(host, port, tls=tls)  # https upstreams (issue 12)
            request = render_relay_request(path, host=host, port=port,
                                           user_agent=self.worker.cfg.server_id,
                                           icy_metadata=self.spec.icy_metadata,
                                           credentials=self.spec.credentials)
            try:
                head, first = request_head(sock, request)
                if head.status == 302 and head.header("location"):
                    target = parse_location(head.header("location") or "")
                    host, port, path, tls = target.host, target.port, target.path, target.tls
                    sock.close()
                    continue
                check_head(head)
            except ProtocolError as exc:
                sock.close()
                raise FetchError(exc.message) from None
            except FetchError:
                sock.close()
                raise
            return sock, head, first
        raise FetchError(f"more than {MAX_REDIRECTS} redirects")

    def stream_info(self, head: ResponseHead) -> MountInfo:
        """The mount's info for the stream `head` starts. Its ring format is the declared
        content type's: none declared is generic, though listeners are told audio/mpeg."""
        relay = RelayInfo(self.upstream, RelayState.STREAMING, self.reconnects,
                          on_demand=self.spec.on_demand)
        return stream_info(head.content_type, self.current[0], headers=head.icy_headers(),
                           icy_metaint=head.metaint, relay=relay,
                           format=format_for_content_type(head.content_type))

    # -- the bytes ----------------------------------------------------------------------------

    def stream(self, sock: socket.socket, record: LocalMount, head: ResponseHead,
               first: bytes) -> str:
        """Copy the upstream into the ring until it ends (return "ended"), the connection
        is lost ("lost"), it stays silent too long ("silent"), a preferred upstream is
        back ("switched"), it cannot continue the ring ("unspliced") or it is no longer
        wanted ("unwanted")."""
        timeout = self.worker.cfg.resolve_mount(self.mount).source_timeout
        sock.settimeout(timeout)
        self.last_block = b""
        try:
            opened = self.feed_for(sock, record, head, first)
        except OSError as exc:
            log.info("relay %s: upstream connection lost (%s)", self.mount, exc)
            return "lost"
        if opened is None:
            return "unspliced"
        feed, rest = opened
        if self.relay is not None and self.relay.state is RelayState.RECONNECTING:
            # Only now that the new stream is placed (after a seam if it does not continue
            # the ring) may newcomers join: admitted earlier, one could start before the
            # seam and hear the old stream run into the new one.
            self.publish(state=RelayState.STREAMING)
        try:
            ending = self.copy(sock, record, feed, rest, timeout)
        finally:
            feed.close()
        if ending == "switched" and record.info.format != OGG:
            # The preferred upstream's stream follows, and the mount takes newcomers all
            # along: whether that stream continues this one, `splice` knows only after
            # reading it (up to SPLICE_WAIT), and a newcomer let in meanwhile would start
            # before the seam. So the seam is marked now, before this greenlet yields; if
            # the stream does continue exactly, newcomers just get less burst for a while.
            # (An Ogg ring keeps its header set: it continues exactly or the mount ends.)
            record.ring.set_stream_header(b"", record.ring.write_seq)
        return ending

    def feed_for(self, sock: socket.socket, record: LocalMount, head: ResponseHead,
                 first: bytes) -> tuple[RingFeed, bytes] | None:
        """The feed that writes this connection into the ring, and the raw bytes to give
        it first. A stream that follows another in the ring is spliced onto it first
        (its overlap dropped); None if it cannot continue an Ogg ring."""
        ring, fmt = record.ring, record.info.format
        label = f"relay {self.mount}"
        if ring.write_seq == 0:
            return RingFeed(ring, fmt, label=label, icy_metaint=head.metaint,
                            on_title=self.reserve_title), first
        spliced = splice(ring, sock, first, head.metaint, ogg=fmt == OGG)
        if not spliced.found:
            if fmt == OGG:
                log.warning("relay %s: the new connection does not continue the Ogg stream; "
                            "ending the mount", self.mount)
                return None
            # Another connection's stream follows what is in the ring: a seam. Listeners
            # already playing pass it; newcomers start after it (Ring.start_point).
            ring.set_stream_header(b"", ring.write_seq)
        else:
            log.info("relay %s: the new connection continues the stream exactly (%d bytes "
                     "overlapped)", self.mount, spliced.overlap)
        for payload in spliced.titles:
            self.reserve_title(payload)
        if head.metaint:  # the rest starts at a metadata interval: a feed that strips them
            plain = RingFeed(ring, fmt, label=label)
            plain.feed(spliced.audio)
            plain.close()
            return RingFeed(ring, fmt, label=label, icy_metaint=head.metaint,
                            on_title=self.reserve_title), spliced.rest
        feed = RingFeed(ring, fmt, label=label)
        feed.feed(spliced.audio)
        return feed, spliced.rest

    def copy(self, sock: socket.socket, record: LocalMount, feed: RingFeed, first: bytes,
             timeout: float) -> str:
        next_stats = time.monotonic() + STATS_INTERVAL
        count: int | None = feed.feed(first)
        self.feed = feed  # probe_preferred wakes it when `better` is found
        try:
            while self.wanted(record):
                self.bytes += count or 0
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + STATS_INTERVAL
                    self.publish(bytes_read=self.bytes)
                try:
                    count = feed.read(sock, min(next_stats, time.monotonic() + self.check_every))
                except socket.timeout:
                    log.warning("relay %s: upstream silent for %ss; reconnecting", self.mount,
                                timeout)
                    return "silent"
                except OSError as exc:
                    log.info("relay %s: upstream connection lost (%s)", self.mount, exc)
                    return "lost"
                if count is None:
                    log.info("relay %s: upstream ended the stream", self.mount)
                    return "ended"
                if self.better is not None:
                    return "switched"
            return "unwanted"
        finally:
            self.feed = None

    def wanted(self, record: LocalMount) -> bool:
        """Whether to keep streaming (always, unless on demand)."""
        return True

    def reserve_title(self, payload: bytes) -> None:
        """Re-serve a changed upstream ICY block byte-identical (§3.4)."""
        try:
            block = block_from_payload(payload)
        except ValueError:
            return  # an empty (L = 0) block: no change
        if block == self.last_block:
            return
        self.last_block = block
        charset = self.worker.cfg.resolve_mount(self.mount).charset
        title = decode_title(parse_block_text(payload).get("StreamTitle", b""), charset)
        self.tell(Metadata(self.mount, block, title))


def same_stream_kind(new: MountInfo, old: MountInfo) -> bool:
    """Whether a stream described by `new` may continue one described by `old` in the same
    ring without ending the mount: same ring format and content type."""
    return (new.format, new.content_type) == (old.format, old.content_type)


def check_head(head: ResponseHead) -> None:
    """Raise FetchError unless the head starts a relayable stream."""
    if not head.ok:
        raise FetchError(f"upstream answered {head.status} {head.reason}".rstrip())
    if "chunked" in (head.header("transfer-encoding") or "").lower():
        raise FetchError("upstream sent a chunked response (not supported, as in KH)")
