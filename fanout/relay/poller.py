"""The slave's master poll loop (PROTOCOL.md §1.2–1.6): fetch → parse → plan → apply.

Theory of operation: one greenlet in the supervisor's hub polls the master right after
start and then every `master-update-interval`. `trigger()` asks for an immediate poll
(a relay ended, a local source left, the config changed); polls are never closer than
MIN_POLL_GAP. After a mount vanished, polls run every FAST_REPOLL seconds for
FAST_WINDOW seconds so a source that comes back is relayed again within about a second
(2.4.4 waits for its next regular poll). The first poll asks for KH's `/admin/streams`;
a master that does not answer it with 200 (2.4.4 says 400) is asked for
`/admin/streamlist.txt` from then on. Only a successful poll changes anything.
"""
from __future__ import annotations

import logging
import time
from typing import Protocol

import gevent
from gevent.event import Event

from fanout.config import MasterConfig
from fanout.protocol.streamlist import StreamList, parse_streamlist
from fanout.protocol.upstream import render_streamlist_request
from fanout.relay.fetch import FetchError, fetch
from fanout.relay.plan import Plan, RelaySpec, plan_relays
from fanout.relay.on_demand import OnDemandPull
from fanout.relay.puller import RelayHost, RelayPull

log = logging.getLogger("fanout.relay")

# Minimum seconds between two polls, however often a poll is triggered.
MIN_POLL_GAP = 0.5
# Poll period (s) while a recently vanished mount may come back.
FAST_REPOLL = 1.0
# How long (s) polls stay fast after a mount vanished.
FAST_WINDOW = 60.0
STREAMLIST_PATH = "/admin/streamlist.txt"
KH_STREAMS_PATH = "/admin/streams"


class PollerHost(RelayHost, Protocol):
    def local_mounts(self) -> set[str]: ...
    def redirect_registration(self) -> str: ...


class MasterPoller:
    def __init__(self, host: PollerHost, master: MasterConfig) -> None:
        self.host = host
        self.master = master
        self.pulls: dict[str, RelayPull] = {}
        self.wake = Event()
        self.kh_master: bool | None = None  # None: not known yet
        self.fast_until = 0.0
        self.greenlet: gevent.Greenlet | None = None

    def start(self) -> None:
        self.greenlet = gevent.spawn(self.run)

    def stop(self) -> None:
        """Stop polling and every master relay."""
        if self.greenlet is not None:
            self.greenlet.kill()
            self.greenlet = None
        for name in list(self.pulls):
            self.pulls.pop(name).stop()

    def trigger(self) -> None:
        self.wake.set()

    def run(self) -> None:
        while True:
            started = time.monotonic()
            self.wake.clear()
            try:
                self.poll_once()
            except Exception:  # a bug in one poll must not end relaying
                log.exception("master %s: poll failed", self.address)
            self.wake.wait(self.next_delay())
            gevent.sleep(max(0.0, started + MIN_POLL_GAP - time.monotonic()))

    def next_delay(self) -> float:
        fast = time.monotonic() < self.fast_until
        return min(FAST_REPOLL, self.master.update_interval) if fast else self.master.update_interval

    def poll_once(self) -> None:
        listing = self.fetch_list()
        if listing is None:
            return
        for warning in listing.warnings:
            log.warning("master %s: %s", self.address, warning)
        running = {name: pull.spec for name, pull in self.pulls.items()}
        self.apply(plan_relays(self.desired(listing), running, self.host.local_mounts()))

    @property
    def address(self) -> str:
        return f"{self.master.server}:{self.master.port}"

    def fetch_list(self) -> StreamList | None:
        """The master's list, or None (logged) if this poll failed."""
        paths = [STREAMLIST_PATH] if self.kh_master is False else [KH_STREAMS_PATH, STREAMLIST_PATH]
        registration = self.host.redirect_registration()  # KH slave redirect (§2.3)
        for path in paths:
            request = render_streamlist_request(path + registration, self.master.username,
                                                self.master.password or "")
            try:
                head, body = fetch(self.master.server, self.master.port, request)
            except FetchError as exc:
                log.warning("master %s: stream list poll failed: %s", self.address, exc)
                return None
            if head.status == 200 and head.version.startswith("HTTP/"):
                self.kh_master = path == KH_STREAMS_PATH
                return parse_streamlist(body)
            if path != paths[-1]:
                continue  # not a KH master (2.4.4 answers 400): ask for the 2.4.4 list
            log.warning("master %s rejected the stream list request (%d %s)", self.address,
                        head.status, head.reason)
        return None

    def desired(self, listing: StreamList) -> dict[str, RelaySpec]:
        credentials = (self.master.username, self.master.password or "")
        return {entry.mount: RelaySpec(entry.mount, self.master.server, self.master.port,
                                       entry.fetch_path, self.master.on_demand,
                                       credentials if entry.fetch_path != entry.mount else None)
                for entry in listing.mounts}

    def apply(self, plan: Plan) -> None:
        for name in plan.stop:
            log.info("relay %s stopped: no longer listed by the master", name)
            self.pulls.pop(name).stop()
            self.fast_until = time.monotonic() + FAST_WINDOW
        for name in plan.keep:
            self.pulls[name].retry_now()
        for spec in plan.start:
            log.info("relay %s: listed by the master %s", spec.mount, self.address)
            pull = (OnDemandPull if spec.on_demand else RelayPull)(spec, self.host, self.trigger)
            self.pulls[spec.mount] = pull
            pull.start()
