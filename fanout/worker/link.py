"""A worker's link to its supervisor: requests that wait for an answer, with deadlines.

Theory of operation: every message a worker sends goes through `send`. Two requests wait
for an answer, each with a deadline so that a stuck supervisor (which is being replaced)
costs a client a 503, not its connection for ever: `claim` (a source wants a mount; the
answer is a ClaimResult, MountUp first if granted) and `gather` (ask every worker a query;
the answer is one Gathered). Answers are matched to requests by id; the control reader
(`main.py`) hands them in with `claim_answered` / `gathered`.
"""
from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass
from typing import Mapping

import gevent
from gevent.event import AsyncResult

from fanout.control import Channel
from fanout.messages import Claim, ClaimResult, Gather, Gathered, Release
from fanout.mountinfo import MountInfo

log = logging.getLogger("fanout.worker")

# Seconds a worker waits for a gather's answers (the supervisor answers after its own
# GATHER_TIMEOUT at the latest).
GATHER_WAIT = 10.0
# Seconds a source waits for the supervisor's answer to its claim (it answers at once
# unless it is stuck, in which case it is being replaced).
CLAIM_WAIT = 10.0
BUSY = "Server busy, try again later"


@dataclass(frozen=True, slots=True)
class ClaimAnswer:
    ok: bool
    status: int
    reason: str


class SupervisorLink:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.ids = itertools.count(1)  # of claims and gathers
        self.claims: dict[int, AsyncResult] = {}
        self.gathers: dict[int, AsyncResult] = {}

    def send(self, message: object) -> None:
        """Send a fanout.messages message; raises OSError if the supervisor is gone."""
        self.channel.send(message)

    def claim(self, mount: str, info: MountInfo) -> ClaimAnswer:
        """Ask the supervisor for `mount`; its answer, or 503 when it gives none within
        CLAIM_WAIT s."""
        claim_id = next(self.ids)
        result: AsyncResult = AsyncResult()
        self.claims[claim_id] = result
        self.send(Claim(claim_id, mount, info))
        try:
            answer: ClaimAnswer = result.get(timeout=CLAIM_WAIT)
        except gevent.Timeout:
            self.claims.pop(claim_id, None)
            log.error("no answer from the supervisor to a claim of %s within %ss", mount, CLAIM_WAIT)
            return ClaimAnswer(False, 503, BUSY)
        return answer

    def claim_answered(self, message: ClaimResult) -> bool:
        """Wake the source that asked; False if none waits any more (it gave up)."""
        result = self.claims.pop(message.id, None)
        if result is None:
            return False
        result.set(ClaimAnswer(message.ok, message.status, message.reason))
        return True

    def gather(self, query: str, args: Mapping[str, object]) -> list[object]:
        """Run `query` on every worker (this one included); their answers, in any order. A
        worker that does not answer in time is left out."""
        gather_id = next(self.ids)
        result: AsyncResult = AsyncResult()
        self.gathers[gather_id] = result
        self.send(Gather(gather_id, query, dict(args)))
        try:
            answers: list[object] = result.get(timeout=GATHER_WAIT)
        except gevent.Timeout:
            self.gathers.pop(gather_id, None)
            return []
        return answers

    def gathered(self, message: Gathered) -> None:
        result = self.gathers.pop(message.id, None)
        if result is not None:
            result.set(list(message.answers))

    def release(self, mount: str) -> None:
        try:
            self.send(Release(mount))
        except OSError:
            pass  # the supervisor is gone; it will not need to hear of it
