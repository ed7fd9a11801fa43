"""Gathers as the supervisor runs them: a worker's question to every worker, answered once.

Theory of operation: a worker's `Gather` opens one in the pure table (`fanout.gathers`)
owed by every worker alive now, and the `Query` goes to all of them; each `Answer` is
recorded. The requester gets one `Gathered` with every answer when the last one owed
arrives, when GATHER_TIMEOUT runs out, or when the last worker that owed one dies.
"""
from __future__ import annotations

from fanout import supervised
from fanout.gathers import Gathers, OpenGather
from fanout.messages import Answer, Gather, Gathered, Query
from fanout.supervisor.pool import WorkerHandle, WorkerPool

# Seconds a gather waits for every worker's answer before answering with what it has.
GATHER_TIMEOUT = 5.0


class Gathering:
    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.gathers: Gathers[WorkerHandle] = Gathers()

    def on_gather(self, message: Gather, handle: WorkerHandle) -> None:
        """Ask every worker `query`; the requester gets all answers in one Gathered."""
        gather_id = self.gathers.open(handle, message.id, self.pool.workers)
        self.pool.broadcast(Query(gather_id, message.query, message.args))
        supervised.spawn_later(GATHER_TIMEOUT, "supervisor.gather", self.timed_out, gather_id)

    def on_answer(self, message: Answer, handle: WorkerHandle) -> None:
        gather = self.gathers.answer(message.gather, handle.index, message.result)
        if gather is not None:
            self.send(gather)

    def timed_out(self, gather_id: int) -> None:
        gather = self.gathers.close(gather_id)
        if gather is not None:
            self.send(gather)

    def worker_died(self, handle: WorkerHandle) -> None:
        """It owes nothing any more; the gathers it asked are dropped."""
        for gather in self.gathers.forget_worker(handle.index, handle):
            self.send(gather)

    def send(self, gather: OpenGather[WorkerHandle]) -> None:
        try:
            gather.requester.channel.send(Gathered(gather.request_id, tuple(gather.answers)))
        except OSError:
            pass  # the requester died meanwhile
