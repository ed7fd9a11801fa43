"""On-demand relay pulls (PROTOCOL.md §3.7): `OnDemandPull`, a `RelayPull` that holds its
mount idle and connects only while the mount has listeners.

On demand (§3.7) the mount is claimed at once, idle (`connected` False in its RelayInfo;
the workers hold a listener's head until it turns True), and the pull connects only while
the ring counts listeners (checked every DEMAND_CHECK s); it disconnects when the count
drops to 0 (or `run_on` seconds later, KH's `<run-on>`). The ring's format is guessed
from the mount name (`.ogg`/`.oga`/`.opus`: Ogg) because a ring's format is fixed when
it is made; an upstream of the other format makes the pull re-claim the mount with the
right one (waiting listeners are dropped).
"""
from __future__ import annotations

import logging
import time

import gevent

from fanout.lifecycle import RelayEvent, RelayState
from fanout.model.ingest import GENERIC, OGG
from fanout.mountinfo import RelayInfo, renewed, stream_info, with_relay
from fanout.registry import ClaimRefused, MountRecord
from fanout.httpclient import FetchError
from fanout.relay.puller import RelayPull

log = logging.getLogger("fanout.relay")

# Seconds between two looks at an on-demand mount's listener count.
DEMAND_CHECK = 0.2
# Mount name endings an idle on-demand mount is prepared as Ogg for.
OGG_SUFFIXES = (".ogg", ".oga", ".opus")
# Content type an idle on-demand mount prepared as Ogg announces until its upstream answers.
OGG_CONTENT_TYPE = "application/ogg"
# Seconds between two claims of an idle on-demand mount that a local source holds.
CLAIM_RETRY = 1.0


class OnDemandPull(RelayPull):
    """A pull that holds its mount idle and connects only while it has listeners."""

    unit = "relay.on_demand"
    idle_since: float | None = None  # when the listener count last fell to 0 while streaming

    def run(self) -> None:
        self.state = RelayState.IDLE  # (re)started: no attempt under way
        record = self.claim_idle()
        try:
            failures = 0
            while True:
                while record.ring.listener_count() == 0:
                    gevent.sleep(DEMAND_CHECK)
                record, streamed = self.serve_demand(record)
                failures = 0 if streamed else failures + 1
                if streamed and record.ring.listener_count() == 0:
                    self.advance(RelayEvent.HANG_UP)  # the last listener left
                    continue
                # The upstream failed or ended while wanted: tell the poller, and back off
                # (listeners arriving meanwhile are refused, as 2.4.4 does, §3.7).
                self.advance(RelayEvent.BACK_OFF)
                self.update_info(lambda old: with_relay(old, state=RelayState.RETRYING))
                self.on_ended()
                self.wake.clear()
                self.wake.wait(self.backoff(max(failures, 1)))
                self.reconnects += 1
                self.advance(RelayEvent.WAIT)
                reconnects = self.reconnects
                self.update_info(lambda old: with_relay(old, state=RelayState.IDLE,
                                                        reconnects=reconnects))
        finally:
            self.host.release_relay_mount(self.spec.mount)

    def claim_idle(self) -> MountRecord:
        """Claim the mount with no upstream yet, retrying while a local source holds it."""
        ogg = self.spec.mount.lower().endswith(OGG_SUFFIXES)
        idle = RelayInfo(self.upstream, RelayState.IDLE, on_demand=True, connected=False)
        info = stream_info(OGG_CONTENT_TYPE if ogg else None, self.spec.host, relay=idle,
                           format=OGG if ogg else GENERIC)
        while True:
            try:
                return self.host.claim_relay_mount(self.spec.mount, info)
            except ClaimRefused as refused:
                self.warn_once(f"relay {self.spec.mount}: mount refused ({refused.reason})")
                gevent.sleep(CLAIM_RETRY)

    def serve_demand(self, record: MountRecord) -> tuple[MountRecord, bool]:
        """Connect and stream while listeners are there: (the mount's record, streamed?)."""
        self.advance(RelayEvent.CONNECT)
        try:
            sock, head, first = self.open()
        except FetchError as exc:
            self.warn_once(f"relay {self.spec.mount} from {self.upstream}: {exc}")
            return record, False
        try:
            info = self.stream_info(head)  # connected, on demand
            if (info.format == OGG) != (record.info.format == OGG):
                self.host.release_relay_mount(self.spec.mount)  # a ring's format is fixed
                record = self.host.claim_relay_mount(self.spec.mount, info)
            else:
                self.update_info(lambda old: renewed(old, info))
            log.info("relay %s from %s: streaming on demand", self.spec.mount, self.upstream)
            self.told.clear()
            self.advance(RelayEvent.STREAM)
            self.idle_since = None
            self.stream(sock, record, head, first)
            log.info("relay %s: disconnected from upstream", self.spec.mount)
            return record, True
        except ClaimRefused as refused:
            log.warning("relay %s: mount refused (%s)", self.spec.mount, refused.reason)
            return self.claim_idle(), False
        finally:
            sock.close()
            self.update_info(lambda old: with_relay(old, connected=False, state=RelayState.IDLE))

    def wanted(self, record: MountRecord) -> bool:
        """While someone listens, and `run_on` seconds after the last one left (KH)."""
        if record.ring.listener_count() > 0:
            self.idle_since = None
            return True
        now = time.monotonic()
        if self.idle_since is None:
            self.idle_since = now
        return now - self.idle_since < self.spec.run_on
