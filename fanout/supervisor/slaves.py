"""The slave-redirect side of the supervisor (Icecast-KH, PROTOCOL.md §2; issue 12).

As a master: the table itself is pure (`fanout.redirects.RedirectTable`); here a slave's
registration (from a worker that served its authenticated stream-list poll) is added,
expired slaves are purged first, and every change goes to every worker as `Redirects`,
which is also among the first messages a new worker gets. A fanout slave's registration
carries its load; the workers choose by it and add its listeners to the cluster totals.

A slave that goes away must leave the rotation within 2 s (issue 12). Its registration
lapses after MISSED_REFRESHES fast-schedule periods (the workers compare the expiry with
the clock themselves: no message needed), and while any fanout slave is registered one
greenlet probes every live one's `/health` every PROBE_INTERVAL s: a refused or failed
probe marks it dead at once, until it registers again; a slow one (over PROBE_TIMEOUT)
only when the one before was slow too, since a busy host may be slow once and a hung one
stops registering anyway (its registration lapses within the 2 s). So
does a worker whose last relay pull from the slave's address failed (`SlavePullClosed`).

As a slave with `<master-redirect>`: `own_load` is what this server reports of itself on
each poll: its listeners (relay pulls of its own slaves never count: the workers do not
count them), the capacity it offers, whether it is healthy (serving, and every mount its
master lists is up here and takes newcomers: a slave whose relays are still connecting
or reconnecting would answer the listeners it is sent with a 404) and its listeners per
public mount.
"""
from __future__ import annotations

import logging
import time
from typing import Mapping, Sequence

import gevent

from fanout import supervised
from fanout.config import Config, ListenSocket
from fanout.counters import Counters
from fanout.lifecycle import RelayState
from fanout.httpclient import FetchError, fetch
from fanout.messages import Redirects, SlavePullClosed, SlaveRegister
from fanout.mountinfo import MountInfo
from fanout.protocol.redirect import SlaveLoad, advertised_capacity
from fanout.redirects import ADDED, FULL, RedirectTable, Target
from fanout.registry import MountRecord
from fanout.supervisor.pool import WorkerHandle, WorkerPool

log = logging.getLogger("fanout.supervisor")

# Seconds between two rounds of /health probes of the registered fanout slaves: with
# PROBE_TIMEOUT, a dead slave is out within 1.5 s even if its registration is fresh.
PROBE_INTERVAL = 0.5
# Seconds a probe may take: a healthy slave answers /health at once, without a gather.
PROBE_TIMEOUT = 1.0
SLOW = f"no answer in {PROBE_TIMEOUT:g}s"  # a probe's failure when it timed out
HEALTH_PROBE = b"GET /health HTTP/1.0\r\nUser-Agent: fanout master\r\n\r\n"


class SlaveRedirects:
    def __init__(self, config: Config, pool: WorkerPool) -> None:
        self.table = RedirectTable(config.max_redirect_slaves, config.redirects)
        self.pool = pool
        self.prober: gevent.Greenlet | None = None
        self.failing: set[tuple[str, int]] = set()  # probes failed: said once in the log
        self.slow: set[tuple[str, int]] = set()  # the last probe timed out

    def message(self) -> Redirects:
        return Redirects(self.table.targets())

    def reconfigure(self, config: Config) -> None:
        self.table.reconfigure(config.max_redirect_slaves, config.redirects)
        self.pool.broadcast(self.message())

    def on_slave_register(self, message: SlaveRegister, handle: WorkerHandle) -> None:
        """A slave's authenticated poll carried its redirect registration."""
        host, port = message.host, message.port
        now = time.monotonic()
        for target in self.table.purge(now):
            log.info("redirect slave %s:%d expired", target.host, target.port)
        outcome = self.table.register(host, port, message.interval, now, message.load,
                                      message.peer, message.tls_port)
        if outcome == FULL:
            log.warning("redirect to slave limit reached (%d); %s:%d not added",
                        self.table.limit, host, port)
            return
        if outcome == ADDED:
            log.info("redirect slave %s:%d registered%s%s", host, port, load_text(message.load),
                     tls_text(message.tls_port))
            if message.bad_tls_port:  # said once per registration, not on every poll
                log.warning("redirect slave %s:%d: its fanout-tls-port %r is not a port; "
                            "ignored (no https listener is sent there)", host, port,
                            message.bad_tls_port)  # %r: escapes what a hostile slave sent
        self.pool.broadcast(self.message())
        if message.load is not None:
            self.start_probes()

    def on_slave_pull_closed(self, message: SlavePullClosed, handle: WorkerHandle) -> None:
        """A worker's last relay pull from a slave's address failed: that slave is
        probably gone; it is chosen again once it registers again."""
        for target in self.table.mark_dead_from(message.address, time.monotonic()):
            log.info("redirect slave %s:%d: its relay pulls from %s closed; not chosen until "
                     "it registers again", target.host, target.port, message.address)
            self.pool.broadcast(self.message())

    # -- /health probes ---------------------------------------------------------------------

    def start_probes(self) -> None:
        """Probe the fanout slaves (a no-op while the prober runs)."""
        if self.prober is None or self.prober.dead:
            self.prober = supervised.spawn("supervisor.slave_probes", self.probe_slaves,
                                           restart=True)

    def probe_slaves(self) -> None:
        """Rounds of probes while any fanout slave is registered."""
        while probed := self.probed_slaves():
            started = time.monotonic()
            probes = [gevent.spawn(probe_health, t.host, t.port) for t in probed]
            gevent.joinall(probes)  # each ends within PROBE_TIMEOUT
            for target, probe in zip(probed, probes):
                self.probe_done(target, probe.value or "")
            gevent.sleep(max(0.0, started + PROBE_INTERVAL - time.monotonic()))

    def probed_slaves(self) -> list[Target]:
        now = time.monotonic()
        return [t for t in self.table.dynamic.values() if t.load is not None and t.live(now)]

    def probe_done(self, target: Target, failure: str) -> None:
        """Mark a slave whose probe failed dead (and tell the workers)."""
        if not failure:
            self.failing.discard(target.key)
            self.slow.discard(target.key)
            return
        if failure == SLOW and target.key not in self.slow:
            self.slow.add(target.key)
            return  # once is no proof (see the module doc)
        if not self.table.mark_dead(target.host, target.port, time.monotonic()):
            return
        if target.key not in self.failing:
            self.failing.add(target.key)
            log.warning("redirect slave %s:%d: /health probe failed (%s); not chosen until "
                        "it registers again", target.host, target.port, failure)
        self.pool.broadcast(self.message())


def probe_health(host: str, port: int) -> str:
    """Why `host:port` does not serve ("" if its /health answered 200 within PROBE_TIMEOUT)."""
    try:
        with gevent.Timeout(PROBE_TIMEOUT, FetchError(SLOW)):
            head, _ = fetch(host, port, HEALTH_PROBE)
    except FetchError as exc:
        return str(exc)
    return "" if head.status == 200 else f"{head.status} {head.reason}"


def takes_newcomers(info: MountInfo) -> bool:
    """Whether a mount serves a new listener now: not a relay that is reconnecting (its
    workers hold the mount and turn newcomers away) or retrying; an idle on-demand relay
    does (it connects for them)."""
    relay = info.relay
    return relay is None or relay.state in (RelayState.STREAMING, RelayState.IDLE)


def load_text(load: SlaveLoad | None) -> str:
    """How a registration's load shows in the log ("" for a KH slave's)."""
    if load is None:
        return ""
    return f" (capacity {load.capacity}, {load.listeners} listeners)"


def tls_text(tls_port: int) -> str:
    """How a registration's TLS port shows in the log ("" if it has none)."""
    return f", https on port {tls_port}" if tls_port > 0 else ""


def registration_ports(sockets: Sequence[tuple[ListenSocket, int]]) -> tuple[int, int]:
    """The (plain, TLS) ports this server registers with as a slave, from its listen
    sockets and their bound ports. Plain: the first that is neither TLS nor PROXY (a
    listener sent there speaks neither), else the first of all, as before TLS ports were
    told apart. TLS: the first TLS socket without PROXY, 0 if none (then its master sends
    it no https listener)."""
    plain = [port for spec, port in sockets if not spec.ssl and not spec.proxy_protocol]
    tls = [port for spec, port in sockets if spec.ssl and not spec.proxy_protocol]
    first = sockets[0][1] if sockets else 0
    return (plain[0] if plain else first), (tls[0] if tls else 0)


def own_load(config: Config, counters: Counters, mounts: Mapping[str, MountRecord],
             relayed: set[str], serving: bool, refresh: float | None) -> SlaveLoad:
    """What this server reports of itself as a slave (see the module doc). `relayed`: the
    mounts its master poller relays; `refresh`: the fast schedule it is on, if any."""
    up = all(name in mounts and takes_newcomers(mounts[name].info) for name in relayed)
    listed = [(name, record.ring.listener_count()) for name, record in mounts.items()
              if not config.resolve_mount(name).hidden]
    return SlaveLoad(listeners=counters.total("listeners"),
                     capacity=advertised_capacity(config.master_redirect_capacity,
                                                  config.limits.clients),
                     healthy=serving and up, refresh=refresh, mounts=tuple(listed),
                     mount_count=len(listed))
