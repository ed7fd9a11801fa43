"""The master's slave-redirect side (Icecast-KH, PROTOCOL.md §2): registrations in, the
table out to every worker.

The table itself is pure (`fanout.redirects.RedirectTable`); here a slave's registration
(from a worker that served its authenticated stream-list poll) is added, expired slaves
are purged first, and every change goes to every worker as `Redirects`, which is also
among the first messages a new worker gets.
"""
from __future__ import annotations

import logging
import time

from fanout.config import Config
from fanout.messages import Redirects, SlaveRegister
from fanout.redirects import ADDED, FULL, RedirectTable
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
        outcome = self.table.register(host, port, message.interval, now)
        if outcome == FULL:
            log.warning("redirect to slave limit reached (%d); %s:%d not added",
                        self.table.limit, host, port)
            return
        if outcome == ADDED:
            log.info("redirect slave %s:%d registered", host, port)
        self.pool.broadcast(self.message())
