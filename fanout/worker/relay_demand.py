"""On-demand relay pulls (PROTOCOL.md §3.7): `OnDemandPull`, a `RelayPull` that holds its
mount idle and connects only while the mount has listeners.

On demand (§3.7) the mount is claimed at once, idle (`connected` False in its RelayInfo;
the workers hold a listener's head until it turns True), and the pull connects only while
the ring counts listeners. It does not poll that count: a worker whose first held
listener starts waiting says so (`DemandRelay`), the supervisor wakes the pull's worker
(`WakeRelay`, `demanded`), and the pull looks at the count again. It disconnects when the
count drops to 0 (or `run_on` seconds later, KH's `<run-on>`): the count is looked at every
DEMAND_CHECK seconds while it streams (the reads themselves happen in the FeedHub). The ring's format is guessed from the mount name
(`.ogg`/`.oga`/`.opus`: Ogg) because a ring's format is fixed when it is made; an
upstream of the other format makes the pull re-claim the mount with the right one
(waiting listeners are dropped). A pull taking over the mount of a worker that died
(`resume`) keeps the mount as it is and connects at once if it has listeners.
"""
from __future__ import annotations

import logging
import time

import gevent
from gevent.event import Event

from fanout.lifecycle import RelayEvent, RelayState
from fanout.model.ingest import GENERIC, OGG
from fanout.mountinfo import RelayInfo, stream_info
from fanout.httpclient import FetchError
from fanout.relay.plan import RelaySpec
from fanout.worker.relay import RelayPull
from fanout.worker.state import LocalMount, Worker

log = logging.getLogger("fanout.relay")

# Mount name endings an idle on-demand mount is prepared as Ogg for.
OGG_SUFFIXES = (".ogg", ".oga", ".opus")
# Content type an idle on-demand mount prepared as Ogg announces until its upstream answers.
OGG_CONTENT_TYPE = "application/ogg"
# Seconds between two claims of an idle on-demand mount that a local source holds.
CLAIM_RETRY = 1.0
# Seconds between two looks at a streaming pull's listener count: it hangs up at most
# this (plus a FeedHub sweep) after `run_on` expired.
DEMAND_CHECK = 1.0


class OnDemandPull(RelayPull):
    """A pull that holds its mount idle and connects only while it has listeners."""

    unit = "relay.on_demand"
    check_every = DEMAND_CHECK
    idle_since: float | None = None  # when the listener count last fell to 0 while streaming

    def __init__(self, worker: Worker, spec: RelaySpec, resume: bool = False) -> None:
        super().__init__(worker, spec, resume)
        self.demand = Event()  # set by `demanded`: listeners may wait

    def demanded(self) -> None:
        self.demand.set()

    def run(self) -> None:
        self.state = RelayState.IDLE  # (re)started: no attempt under way
        record = self.adopt() if self.resume else self.claim_idle()
        try:
            failures = 0
            while True:
                self.await_listeners(record)
                record, streamed = self.serve_demand(record)
                failures = 0 if streamed else failures + 1
                if streamed and record.ring.listener_count() == 0:
                    self.advance(RelayEvent.HANG_UP)  # the last listener left
                    continue
                # The upstream failed or ended while wanted: tell the poller, and back off
                # (listeners arriving meanwhile are refused, as 2.4.4 does, §3.7).
                self.advance(RelayEvent.BACK_OFF)
                self.publish(state=RelayState.RETRYING)
                self.ended()
                self.wake.clear()
                self.wake.wait(self.backoff(max(failures, 1)))
                self.reconnects += 1
                self.advance(RelayEvent.WAIT)
                self.publish(state=RelayState.IDLE, reconnects=self.reconnects)
        finally:
            self.release()

    def await_listeners(self, record: LocalMount) -> None:
        """Return once the ring counts a listener (woken by `demanded`, not polling)."""
        while True:
            self.demand.clear()
            if record.ring.listener_count() > 0:
                return
            self.demand.wait()

    def adopt(self) -> LocalMount:
        """The mount the supervisor handed this pull, as it is; claimed anew if it is gone."""
        self.resume = False
        record = self.worker.mounts.get(self.mount)
        if record is None or record.ended:
            return self.claim_idle()
        self.relay = record.info.relay
        log.info("relay %s: taking over the mount (worker %d)", self.mount, self.worker.index)
        return record

    def claim_idle(self) -> LocalMount:
        """Claim the mount with no upstream yet, retrying while a local source holds it."""
        ogg = self.mount.lower().endswith(OGG_SUFFIXES)
        idle = RelayInfo(self.upstream, RelayState.IDLE, on_demand=True, connected=False)
        info = stream_info(OGG_CONTENT_TYPE if ogg else None, self.spec.host, relay=idle,
                           format=OGG if ogg else GENERIC)
        while True:
            record = self.claim(info)
            if record is not None:
                return record
            gevent.sleep(CLAIM_RETRY)

    def serve_demand(self, record: LocalMount) -> tuple[LocalMount, bool]:
        """Connect and stream while listeners are there: (the mount's record, streamed?)."""
        self.advance(RelayEvent.CONNECT)
        try:
            sock, head, first = self.open()
        except FetchError as exc:
            self.warn_once(f"relay {self.mount} from {self.upstream}: {exc}")
            return record, False
        try:
            info = self.stream_info(head)  # connected, on demand
            if (info.format == OGG) != (record.info.format == OGG):
                self.worker.link.release(self.mount)  # a ring's format is fixed
                claimed = self.claim(info)
                if claimed is None:
                    return self.claim_idle(), False
                record = claimed
            else:
                self.renew(info)
            log.info("relay %s from %s: streaming on demand", self.mount, self.upstream)
            self.told.clear()
            self.advance(RelayEvent.STREAM)
            self.idle_since = None
            self.stream(sock, record, head, first)
            log.info("relay %s: disconnected from upstream", self.mount)
            return record, True
        finally:
            sock.close()
            self.publish(connected=False, state=RelayState.IDLE)

    def wanted(self, record: LocalMount) -> bool:
        """While someone listens, and `run_on` seconds after the last one left (KH)."""
        if record.ring.listener_count() > 0:
            self.idle_since = None
            return True
        now = time.monotonic()
        if self.idle_since is None:
            self.idle_since = now
        return now - self.idle_since < self.spec.run_on
