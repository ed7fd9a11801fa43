"""The slave-redirect side of the supervisor (Icecast-KH, PROTOCOL.md §2; issue 12).

As a master: the table itself is pure (`fanout.redirects.RedirectTable`); here a slave's
registration (from a worker that served its authenticated stream-list poll) is added,
expired slaves are purged first, and every change goes to every worker as `Redirects`,
which is also among the first messages a new worker gets. A fanout slave's registration
carries its load; the workers choose by it and add its listeners to the cluster totals.

As a slave with `<master-redirect>`: `own_load` is what this server reports of itself on
each poll: its listeners (relay pulls of its own slaves never count: the workers do not
count them), the capacity it offers, whether it is healthy (serving, and every mount its
master lists is up here: a slave whose relays are still connecting would answer the
listeners it is sent with a 404) and its listeners per public mount.
"""
from __future__ import annotations

import logging
import time
from typing import Mapping

from fanout.config import Config
from fanout.counters import Counters
from fanout.messages import Redirects, SlaveRegister
from fanout.protocol.redirect import SlaveLoad, advertised_capacity
from fanout.redirects import ADDED, FULL, RedirectTable
from fanout.registry import MountRecord
from fanout.supervisor.pool import WorkerHandle, WorkerPool

log = logging.getLogger("fanout.supervisor")


class SlaveRedirects:
    def __init__(self, config: Config, pool: WorkerPool) -> None:
        self.table = RedirectTable(config.max_redirect_slaves, config.redirects)
        self.pool = pool

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
                                      message.peer)
        if outcome == FULL:
            log.warning("redirect to slave limit reached (%d); %s:%d not added",
                        self.table.limit, host, port)
            return
        if outcome == ADDED:
            log.info("redirect slave %s:%d registered%s", host, port, load_text(message.load))
        self.pool.broadcast(self.message())


def load_text(load: SlaveLoad | None) -> str:
    """How a registration's load shows in the log ("" for a KH slave's)."""
    if load is None:
        return ""
    return f" (capacity {load.capacity}, {load.listeners} listeners)"


def own_load(config: Config, counters: Counters, mounts: Mapping[str, MountRecord],
             relayed: set[str], serving: bool, refresh: float | None) -> SlaveLoad:
    """What this server reports of itself as a slave (see the module doc). `relayed`: the
    mounts its master poller relays; `refresh`: the fast schedule it is on, if any."""
    up = all(name in mounts for name in relayed)
    listed = [(name, record.ring.listener_count()) for name, record in mounts.items()
              if not config.resolve_mount(name).hidden]
    return SlaveLoad(listeners=counters.total("listeners"),
                     capacity=advertised_capacity(config.master_redirect_capacity,
                                                  config.limits.clients),
                     healthy=serving and up, refresh=refresh, mounts=tuple(listed))
