"""Which process runs each relay pull (fanout/supervisor/ownership.py): assigned to the
least loaded, handed on when its owner leaves, evened out on request."""
from __future__ import annotations

from fanout.supervisor.ownership import RelayOwnership


def test_a_lone_worker_runs_every_relay_and_another_ones_death_moves_nothing():
    ownership = RelayOwnership([0])
    assert [ownership.assign(m) for m in ("/a", "/b", "/c")] == [0] * 3
    assert ownership.owner_left(1) == {}
    assert ownership.owner_of("/b") == 0


def test_relays_go_to_the_least_loaded_candidate_and_keep_their_owner():
    ownership = RelayOwnership([0, 1, 2])
    assert [ownership.assign(f"/m{i}") for i in range(5)] == [0, 1, 2, 0, 1]
    assert ownership.assign("/m0") == 0  # asked again: the same owner
    ownership.release("/m1")
    assert ownership.assign("/new") == 1
    assert ownership.load() == {0: 2, 1: 2, 2: 1}


def test_a_dead_owners_relays_go_to_the_others_least_loaded_first():
    ownership = RelayOwnership([0, 1, 2])
    for i in range(6):
        ownership.assign(f"/m{i}")  # 0: m0 m3, 1: m1 m4, 2: m2 m5
    ownership.assign("/extra")  # to 0
    assert ownership.owner_left(0) == {"/extra": 1, "/m0": 2, "/m3": 1}
    assert 0 not in ownership.candidates and ownership.load() == {1: 4, 2: 3}


def test_with_no_candidate_left_relays_wait_as_orphans_for_the_next():
    ownership = RelayOwnership([7])
    ownership.assign("/a")
    assert ownership.owner_left(7) == {"/a": None}
    assert ownership.assign("/b") is None and ownership.orphans == {"/a", "/b"}
    assert ownership.owner_joined(8) == {"/a": 8, "/b": 8}
    assert ownership.orphans == set() and ownership.owner_of("/a") == 8


def test_rebalance_evens_the_load_to_within_one():
    ownership = RelayOwnership([0])
    for i in range(5):
        ownership.assign(f"/m{i}")
    ownership.owner_joined(1)
    ownership.owner_joined(2)
    moves = ownership.rebalance()
    assert moves == [("/m0", 0, 1), ("/m1", 0, 2), ("/m2", 0, 1)]
    assert sorted(ownership.load().values()) == [1, 2, 2]
    assert ownership.rebalance() == []
