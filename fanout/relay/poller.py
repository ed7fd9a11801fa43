"""The slave's master poll loop (PROTOCOL.md §1.2–1.6): fetch → parse → plan → apply.

Theory of operation: one greenlet in the supervisor's hub polls the master right after
start and then every `master-update-interval`. `trigger()` asks for an immediate poll
(a relay ended, a local source left, the config changed); polls are never closer than
MIN_POLL_GAP. After a mount vanished, polls run every FAST_REPOLL seconds for
FAST_WINDOW seconds so a source that comes back is relayed again within about a second
(2.4.4 waits for its next regular poll). A fanout master that got this slave's load
report answers `X-Fanout-Refresh: S`; polls then run every S seconds (the fast
registration schedule, issue 12) until a poll fails or a master stops asking.
The first poll asks for KH's `/admin/streams`;
a master that does not answer it with 200 (2.4.4 says 400) is asked for
`/admin/streamlist.txt` from then on. Only a successful poll changes anything; the first
one after a failed poll cuts the backoff of every kept relay short (the master is back).

Bounds, so that a broken or hostile master costs the slave little: the fetch bounds the
body and its time (`fanout/httpclient.py`), the parser reads at most MAX_LINES lines, and the first
MAX_RELAYED_MOUNTS listed mounts are relayed, the rest ignored with one warning when that
starts (and again only when it stops and starts again). Skipped lines cost one summary
line per poll. Pulls start in batches of START_BATCH with a pause between, so thousands
of them neither freeze this hub nor hit the master all at once; per poll at most
LOGGED_CHANGES starts and stops are logged one by one, the rest are counted.
"""
from __future__ import annotations

import logging
import time
from typing import Iterable, Protocol

import gevent
from gevent.event import Event

from fanout import supervised
from fanout.config import MasterConfig
from fanout.protocol.redirect import REFRESH_HEADER, parse_refresh
from fanout.protocol.streamlist import MAX_LINES, ListedMount, StreamList, parse_streamlist
from fanout.protocol.upstream import render_streamlist_request
from fanout.httpclient import FetchError, fetch
from fanout.relay.host import RelayHost, RelayRun
from fanout.relay.plan import Plan, RelaySpec, plan_relays

log = logging.getLogger("fanout.relay")

# Minimum seconds between two polls, however often a poll is triggered.
MIN_POLL_GAP = 0.5
# Poll period (s) while a recently vanished mount may come back.
FAST_REPOLL = 1.0
# How long (s) polls stay fast after a mount vanished.
FAST_WINDOW = 60.0
# Mounts relayed from one master at most (the first ones listed): Icecast-KH operators run
# ~1,400 relays on one box; every relayed mount costs about 20 KB in the supervisor and in
# each worker, so 5,000 stay around 100 MB each.
MAX_RELAYED_MOUNTS = 5_000
# Pulls started at once, and the pause (s) before the next batch: 2,000 starts a second
# keep the hub answering its workers and spare the master a thundering herd.
START_BATCH = 100
START_PAUSE = 0.05
# Relay starts and stops logged one by one per poll; the rest are summed up in one line.
LOGGED_CHANGES = 10
STREAMLIST_PATH = "/admin/streamlist.txt"
KH_STREAMS_PATH = "/admin/streams"


class PollerHost(RelayHost, Protocol):
    def local_mounts(self) -> set[str]: ...
    def redirect_registration(self, refresh: float | None = None) -> str: ...


class MasterPoller:
    def __init__(self, host: PollerHost, master: MasterConfig) -> None:
        self.host = host
        self.master = master
        self.pulls: dict[str, RelayRun] = {}
        self.wake = Event()
        self.kh_master: bool | None = None  # None: not known yet
        self.fast_until = 0.0
        self.greenlet: gevent.Greenlet | None = None
        self.last_poll_failed = False
        self.refresh: float | None = None  # the fast schedule the master asked for, if any
        # The limits the last list hit: (more than MAX_LINES lines, more than
        # MAX_RELAYED_MOUNTS mounts); warned when they change.
        self.over_limits = (False, False)

    def start(self) -> None:
        self.greenlet = supervised.spawn("relay.poller", self.run, restart=True)

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
                supervised.report("relay.poller", f"master {self.address}")
            self.wake.wait(self.next_delay())
            gevent.sleep(max(0.0, started + MIN_POLL_GAP - time.monotonic()))

    def next_delay(self) -> float:
        fast = time.monotonic() < self.fast_until
        delay = min(FAST_REPOLL, self.master.update_interval) if fast else self.master.update_interval
        return delay if self.refresh is None else min(delay, self.refresh)

    def poll_once(self) -> None:
        listing = self.fetch_list()
        if listing is None:
            self.last_poll_failed = True
            return
        self.report_skipped(listing)
        local = self.host.local_mounts()
        listed = [entry for entry in listing.mounts if entry.mount not in local]
        self.report_limits(listing.truncated, len(listed))
        running = {name: pull.spec for name, pull in self.pulls.items()}
        plan = plan_relays(self.desired(listed[:MAX_RELAYED_MOUNTS]), running, local)
        self.apply(plan, retry=self.last_poll_failed)
        self.last_poll_failed = False

    @property
    def address(self) -> str:
        return f"{self.master.server}:{self.master.upstream_port}"

    def fetch_list(self) -> StreamList | None:
        """The master's list, or None (logged) if this poll failed."""
        paths = [STREAMLIST_PATH] if self.kh_master is False else [KH_STREAMS_PATH, STREAMLIST_PATH]
        registration = self.host.redirect_registration(self.refresh)  # KH slave redirect (§2.3)
        self.refresh = None  # until a master asks again
        for path in paths:
            request = render_streamlist_request(path + registration, self.master.username,
                                                self.master.password or "")
            try:
                head, body = fetch(self.master.server, self.master.upstream_port, request,
                                   tls=self.master.tls)  # issue 12: KH <master-ssl-port>
            except FetchError as exc:
                log.warning("master %s: stream list poll failed: %s", self.address, exc)
                return None
            if head.status == 200 and head.version.startswith("HTTP/"):
                self.kh_master = path == KH_STREAMS_PATH
                self.refresh = parse_refresh(head.header(REFRESH_HEADER)) if registration else None
                return parse_streamlist(body)
            if path != paths[-1]:
                continue  # not a KH master (2.4.4 answers 400): ask for the 2.4.4 list
            log.warning("master %s rejected the stream list request (%d %s)", self.address,
                        head.status, head.reason)
        return None

    def report_skipped(self, listing: StreamList) -> None:
        """One line per poll for the lines that were not a usable mount."""
        if listing.skipped:
            log.warning("master %s: %d stream list line(s) skipped (%s%s)", self.address,
                        listing.skipped, "; ".join(listing.examples),
                        "; …" if listing.skipped > len(listing.examples) else "")

    def report_limits(self, truncated: bool, listed: int) -> None:
        """Warn when the list outgrows the limits (`truncated`: it had more than MAX_LINES
        lines; `listed` mounts are not held locally), not again while the same ones are hit."""
        over = (truncated, listed > MAX_RELAYED_MOUNTS)
        if any(over) and over != self.over_limits:
            log.warning("master %s lists %s", self.address, over_limits(truncated, listed))
        elif any(self.over_limits) and not any(over):
            log.info("master %s lists %d mounts: within the limits again", self.address, listed)
        self.over_limits = over

    def desired(self, entries: Iterable[ListedMount]) -> dict[str, RelaySpec]:
        credentials = (self.master.username, self.master.password or "")
        return {entry.mount: RelaySpec(entry.mount, self.master.server, self.master.upstream_port,
                                       entry.fetch_path, self.master.on_demand,
                                       credentials if entry.fetch_path != entry.mount else None,
                                       tls_upstreams=frozenset(
                                           {(self.master.server, self.master.upstream_port)}
                                           if self.master.tls else ()))
                for entry in entries}

    def apply(self, plan: Plan, retry: bool = False) -> None:
        """Stop, keep (cutting their backoff short if `retry`) and start pulls."""
        for count, name in enumerate(plan.stop):
            log_change(count, "relay %s stopped: no longer listed by the master", name)
            self.pulls.pop(name).stop()
            self.fast_until = time.monotonic() + FAST_WINDOW
        log_rest(len(plan.stop), "relays stopped: no longer listed by the master")
        if retry:
            for name in plan.keep:
                self.pulls[name].retry_now()
        for count, spec in enumerate(plan.start):
            if count and count % START_BATCH == 0:
                gevent.sleep(START_PAUSE)
            log_change(count, "relay %s: listed by the master %s", spec.mount, self.address)
            self.pulls[spec.mount] = self.host.start_relay(spec, self.trigger)
        log_rest(len(plan.start), f"relays started: listed by the master {self.address}")


def over_limits(truncated: bool, listed: int) -> str:
    """What of a list is ignored for the limits."""
    parts = []
    if truncated:
        parts.append(f"more than {MAX_LINES} lines (only those are read)")
    if listed > MAX_RELAYED_MOUNTS:
        parts.append(f"{listed} mounts (only the first {MAX_RELAYED_MOUNTS} are relayed: the "
                     "limit per master)")
    return "; ".join(parts)


def log_change(count: int, message: str, *args: object) -> None:
    """Log the `count`-th change of a poll (0-based) if it is among the first LOGGED_CHANGES."""
    if count < LOGGED_CHANGES:
        log.info(message, *args)


def log_rest(total: int, what: str) -> None:
    """Sum up the changes of a poll that were not logged one by one."""
    if total > LOGGED_CHANGES:
        log.info("%d more %s", total - LOGGED_CHANGES, what)
