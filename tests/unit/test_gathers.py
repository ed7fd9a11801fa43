"""The supervisor's gather bookkeeping: complete on the last answer, a timeout, or deaths."""
from __future__ import annotations

from fanout.gathers import NO_GATHER, Gathers


def test_a_gather_completes_once_with_every_answer():
    gathers = Gathers()
    gid = gathers.open("requester", 7, [0, 1])
    assert gid != NO_GATHER
    assert gathers.answer(gid, 0, "a") is None
    done = gathers.answer(gid, 1, "b")
    assert done is not None and (done.request_id, done.answers) == (7, ["a", "b"])
    assert gathers.answer(gid, 1, "late") is None and gathers.close(gid) is None


def test_a_timed_out_gather_has_what_arrived():
    gathers = Gathers()
    gid = gathers.open("requester", 1, [0, 1])
    gathers.answer(gid, 0, "a")
    done = gathers.close(gid)
    assert done is not None and done.answers == ["a"]


def test_a_dead_worker_owes_nothing_and_its_own_gathers_are_dropped():
    gathers = Gathers()
    owed = gathers.open("alive", 1, [0, 1])
    mine = gathers.open("dead", 2, [0, 1])
    gathers.answer(owed, 0, "a")
    done = gathers.forget_worker(1, "dead")
    assert [g.request_id for g in done] == [1]
    assert gathers.close(mine) is None
