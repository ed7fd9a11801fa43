"""One relay pull (PROTOCOL.md §1.7, §3.2–3.5, §3.8): a greenlet in the supervisor's hub
that fetches a mount from an upstream and writes it into a ring, as a source would.

Theory of operation: `run` loops over attempts. An attempt connects, sends the relay
request, follows up to MAX_REDIRECTS `302`s and reads the response head; only a 2xx makes
the supervisor claim the mount (so the mount is 404 on this server while the upstream is
away, as in Icecast 2.4.4, and the listeners get a head built from the upstream's). The
stream then goes through the one ingest path: ICY blocks are stripped and each changed
title is re-served byte-identical through the supervisor. When the stream ends the mount
is released (workers get `mount_down`) and `on_ended` tells the poller to re-ask the
master. The next attempt waits a bounded exponential backoff; `retry_now` cuts it short.
An attempt tries the spec's upstreams in order (a configured `<relay>` may list several)
and the first that answers 2xx is relayed; the backoff follows only when all failed.

On-demand pulls are `OnDemandPull` (`on_demand.py`).
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Protocol

import gevent
from gevent import socket
from gevent.event import Event

from fanout import supervised
from fanout.config import Config
from fanout.lifecycle import RelayEvent, RelayState, next_relay_state
from fanout.model.ingest import OGG, format_for_content_type
from fanout.mountinfo import MountInfo, RelayInfo, renewed, stream_info, with_relay
from fanout.protocol.errors import ProtocolError
from fanout.protocol.icy import block_from_payload, parse_block_text
from fanout.protocol.text import decode_title
from fanout.protocol.upstream import (MAX_REDIRECTS, ResponseHead, parse_location,
                                      render_relay_request)
from fanout.registry import SUPERVISOR_OWNER, ClaimRefused, MountRecord
from fanout.httpclient import FetchError, connect, request_head
from fanout.relay.plan import RelaySpec
from fanout.ringio import RingFeed

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


class RelayHost(Protocol):
    """What a pull needs from the supervisor."""

    config: Config

    def claim_relay_mount(self, name: str, info: MountInfo) -> MountRecord: ...
    def release_relay_mount(self, name: str) -> None: ...
    def set_mount_metadata(self, name: str, block: bytes, title: str) -> None: ...
    def update_relay_info(self, name: str, change: Callable[[MountInfo], MountInfo]) -> None:
        """Replace the info of `name` (if a relay pull holds it) with `change(info)`."""
    def live_fallback(self, name: str) -> str | None: ...
    def assign_relay(self, mount: str) -> int | None:
        """Who runs relay `mount`'s pull (SUPERVISOR_OWNER: the host's own hub)."""
    def unassign_relay(self, mount: str) -> None: ...


def backoff_delay(failures: int, longest: float = BACKOFF_MAX) -> float:
    """Seconds to wait after `failures` consecutive failed attempts (≥ 1)."""
    return float(min(longest, BACKOFF_FIRST * 2 ** max(0, failures - 1)))


class RelayPull:
    unit = "relay.pull"  # its name as a supervised unit

    def __init__(self, spec: RelaySpec, host: RelayHost, on_ended: Callable[[], None]) -> None:
        self.spec = spec
        self.host = host
        self.on_ended = on_ended
        self.state = RelayState.IDLE  # moved only by `advance` (fanout.lifecycle's table)
        self.reconnects = 0
        self.bytes = 0
        self.greenlet: gevent.Greenlet | None = None
        self.wake = Event()
        self.last_block = b""
        self.current = spec.upstreams()[0]  # the (host, port, path) tried or streaming last
        # A connection to a preferred upstream that answered while we streamed from a backup.
        self.better: tuple[socket.socket, ResponseHead, bytes, tuple[str, int, str]] | None = None
        # The last failure logged per upstream since the pull last streamed (warn_once).
        self.told: dict[tuple[str, int, str], str] = {}

    @property
    def upstream(self) -> str:
        host, port, path = self.current
        return f"http://{host}:{port}{path}"

    def advance(self, event: RelayEvent) -> None:
        self.state = next_relay_state(self.state, event)

    def update_info(self, change: Callable[[MountInfo], MountInfo]) -> None:
        self.host.update_relay_info(self.spec.mount, change)

    def backoff(self, failures: int) -> float:
        return backoff_delay(failures, self.spec.retry_max or BACKOFF_MAX)

    def start(self) -> None:
        """Run the pull where the host says: today always in its own hub (the ownership
        seam, `fanout/supervisor/ownership.py`, is where pulls will move to workers)."""
        owner = self.host.assign_relay(self.spec.mount)
        assert owner == SUPERVISOR_OWNER, f"relay pulls run in the supervisor, not {owner}"
        self.greenlet = supervised.spawn(self.unit, self.run, restart=True)

    def stop(self) -> None:
        """Stop pulling; the mount (if claimed) is released before this returns."""
        if self.greenlet is not None:
            self.greenlet.kill()
            self.greenlet = None
        self.host.unassign_relay(self.spec.mount)

    def retry_now(self) -> None:
        """Cut a backoff wait short (the poller saw the master answer again)."""
        if self.state is RelayState.RETRYING:
            self.wake.set()

    def run(self) -> None:
        self.state = RelayState.IDLE  # (re)started: no attempt under way
        failures = 0
        while True:
            try:
                streamed = self.attempt()
            except Exception:  # a bug must not leave a listed mount without a pull
                supervised.report(self.unit, self.spec.mount)
                streamed = False
            failures = 1 if streamed else failures + 1
            self.advance(RelayEvent.BACK_OFF)
            self.on_ended()
            self.wake.clear()
            self.wake.wait(self.backoff(failures))
            self.reconnects += 1

    def attempt(self) -> bool:
        """One connection; True if the upstream's stream was relayed (however briefly)."""
        self.advance(RelayEvent.CONNECT)
        try:
            sock, head, first = self.open()
        except FetchError as exc:
            self.warn_once(f"relay {self.spec.mount} from {self.upstream}: {exc}")
            return False
        try:
            record = self.host.claim_relay_mount(self.spec.mount, self.stream_info(head))
        except ClaimRefused as refused:
            self.warn_once(f"relay {self.spec.mount}: mount refused ({refused.reason})")
            sock.close()
            return False
        event = RelayEvent.STREAM
        try:
            while True:
                log.info("relay %s from %s: streaming (%s)", self.spec.mount, self.upstream,
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
                    switched = self.stream_info(head)
                    self.update_info(lambda old: renewed(old, switched))
                    event = RelayEvent.SWITCH
                    continue
                # Listeners of a silent upstream have waited a source-timeout already.
                reopened = None if ending == "silent" else self.reopen(record)
                if reopened is None:
                    return True
                sock, head, first = reopened
                event = RelayEvent.RESUME
        finally:
            self.host.release_relay_mount(self.spec.mount)

    def warn_once(self, message: str) -> None:
        """Log why an attempt failed, unless the same upstream failed the same way last
        time: a pull retrying a broken upstream says why once, not every attempt, until
        it streamed again."""
        if self.told.get(self.current) != message:
            log.warning("%s", message)
        self.told[self.current] = message

    def reopen(self, record: MountRecord) -> tuple[socket.socket, ResponseHead, bytes] | None:
        """After the upstream dropped, reconnect while the mount keeps its listeners (KH
        keeps them paused, §3.11; 2.4.4 drops them at once), for at most the mount's
        source-timeout, so a restarting upstream costs them a gap, not the stream.

        Meanwhile newcomers are not served this mount (workers see its RelayInfo in state
        RECONNECTING). No hold when the listeners have somewhere to go (a live fallback
        takes them at once), for Ogg (a new stream's header pages would need a new ring), or
        when the stream comes back in another format. None when the mount must end; else
        the new connection."""
        if record.info.format == OGG or self.host.live_fallback(self.spec.mount):
            return None
        hold = self.host.config.resolve_mount(self.spec.mount).source_timeout
        lost, delay = time.monotonic(), HOLD_RETRY_FIRST
        self.advance(RelayEvent.DROP)
        self.update_info(lambda old: with_relay(old, state=RelayState.RECONNECTING))
        log.info("relay %s: holding its listeners up to %ss while reconnecting", self.spec.mount, hold)
        while True:
            try:
                sock, head, first = self.open()
            except FetchError as exc:
                if time.monotonic() + delay > lost + hold or self.host.live_fallback(self.spec.mount):
                    log.warning("relay %s from %s: %s; ending the mount", self.spec.mount,
                                self.upstream, exc)
                    return None
                gevent.sleep(delay)
                delay = min(2 * delay, HOLD_RETRY_MAX)
                continue
            info = self.stream_info(head)
            if not same_stream_kind(info, record.info):
                log.warning("relay %s: upstream came back as %s; ending the mount", self.spec.mount,
                            info.content_type)
                sock.close()
                return None
            self.reconnects += 1
            back = with_relay(info, reconnects=self.reconnects, bytes_read=self.bytes)
            self.update_info(lambda old: renewed(old, back))
            log.info("relay %s: upstream back after %.1f s; its listeners stayed", self.spec.mount,
                     time.monotonic() - lost)
            return sock, head, first

    def on_backup(self) -> bool:
        """Whether this (always-on) pull streams from other than its first upstream."""
        return not self.spec.on_demand and self.current != self.spec.upstreams()[0]

    def probe_preferred(self, record: MountRecord) -> None:
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
                         self.spec.mount, *upstream)
                self.better = (sock, head, first, upstream)
                break

    def open(self) -> tuple[socket.socket, ResponseHead, bytes]:
        """Get a 2xx head from the first upstream that gives one; raises FetchError (the
        last upstream's) when none does."""
        *others, last = self.spec.upstreams()
        for upstream in others:
            self.current = upstream
            try:
                return self.open_at(*upstream)
            except FetchError as exc:
                self.warn_once(f"relay {self.spec.mount} from {self.upstream}: {exc}; "
                               "trying the next upstream")
        self.current = last
        return self.open_at(*last)

    def open_at(self, host: str, port: int, path: str) -> tuple[socket.socket, ResponseHead, bytes]:
        """Connect and get a 2xx head, following redirects; raises FetchError."""
        tls = (host, port) in self.spec.tls_upstreams
        for _ in range(MAX_REDIRECTS + 1):
            sock = connect(host, port, tls=tls)  # issue 12: https upstreams
            request = render_relay_request(path, host=host, port=port,
                                           user_agent=self.host.config.server_id,
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

    def stream(self, sock: socket.socket, record: MountRecord, head: ResponseHead,
               first: bytes) -> str:
        """Copy the upstream into the ring until it ends (return "ended"), the connection
        is lost ("lost"), it stays silent too long ("silent"), a preferred upstream is
        back ("switched") or it is no longer wanted."""
        if record.info.format != OGG and record.ring.write_seq > 0:
            # Another connection's stream follows what is in the ring: a seam. Listeners
            # already playing pass it; newcomers start after it (Ring.start_point).
            record.ring.set_stream_header(b"", record.ring.write_seq)
        feed = RingFeed(record.ring, record.info.format, label=f"relay {self.spec.mount}",
                        icy_metaint=head.metaint, on_title=self.reserve_title)
        timeout = self.host.config.resolve_mount(self.spec.mount).source_timeout
        sock.settimeout(timeout)
        self.last_block = b""
        next_stats = time.monotonic() + STATS_INTERVAL
        count = feed.feed(first)
        while self.wanted(record):
            self.bytes += count
            if time.monotonic() >= next_stats:
                next_stats = time.monotonic() + STATS_INTERVAL
                read = self.bytes
                self.update_info(lambda old: with_relay(old, bytes_read=read))
            try:
                count = feed.read(sock)
            except socket.timeout:
                log.warning("relay %s: upstream silent for %ss; reconnecting", self.spec.mount, timeout)
                return "silent"
            except OSError as exc:
                log.info("relay %s: upstream connection lost (%s)", self.spec.mount, exc)
                return "lost"
            if not count:
                log.info("relay %s: upstream ended the stream", self.spec.mount)
                return "ended"
            if self.better is not None:
                return "switched"
        return "unwanted"

    def wanted(self, record: MountRecord) -> bool:
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
        charset = self.host.config.resolve_mount(self.spec.mount).charset
        title = decode_title(parse_block_text(payload).get("StreamTitle", b""), charset)
        self.host.set_mount_metadata(self.spec.mount, block, title)


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
