"""The supervisor's open gathers: a worker's question to every worker (PROTOCOL-free).

Theory of operation: a worker sends `gather`; the supervisor `open`s one here, with the
set of workers that owe an answer, and broadcasts the `query`. Each `answer` is recorded;
the gather is complete when no worker owes one, when GATHER_TIMEOUT runs out, or when
the last one that owed it dies (`forget_worker`). A complete gather is handed back once
so the supervisor sends its requester one `gathered` with every answer. A requester that
dies drops its gathers.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Generic, Iterable, TypeVar

# Gather id of a query nobody waits for (real gathers count from 1): answers are dropped.
NO_GATHER = 0


R = TypeVar("R")  # who asked: the supervisor's WorkerHandle


@dataclass(slots=True)
class OpenGather(Generic[R]):
    """A worker's question to every worker, and the answers so far."""

    requester: R
    request_id: int
    pending: set[int]  # indexes of the workers that still owe an answer
    answers: list[object]


class Gathers(Generic[R]):
    def __init__(self) -> None:
        self.open_gathers: dict[int, OpenGather[R]] = {}
        self.ids = itertools.count(NO_GATHER + 1)

    def open(self, requester: R, request_id: int, workers: Iterable[int]) -> int:
        """A new gather owed by `workers`; its id."""
        gather_id = next(self.ids)
        self.open_gathers[gather_id] = OpenGather(requester, request_id, set(workers), [])
        return gather_id

    def answer(self, gather_id: int, worker: int, result: object) -> OpenGather[R] | None:
        """Record `worker`'s answer; the gather if that completed it."""
        gather = self.open_gathers.get(gather_id)
        if gather is None:
            return None  # answered too late
        gather.answers.append(result)
        gather.pending.discard(worker)
        return self.close(gather_id) if not gather.pending else None

    def close(self, gather_id: int) -> OpenGather[R] | None:
        """Complete a gather (the timeout ran out); None if it already was."""
        return self.open_gathers.pop(gather_id, None)

    def forget_worker(self, worker: int, handle: R) -> list[OpenGather[R]]:
        """A worker died: it owes nothing, its own gathers are dropped; the gathers this
        completed."""
        done: list[OpenGather[R]] = []
        for gather_id, gather in list(self.open_gathers.items()):
            gather.pending.discard(worker)
            if gather.requester is handle:
                del self.open_gathers[gather_id]
            elif not gather.pending:
                done.append(self.open_gathers.pop(gather_id))
        return done
