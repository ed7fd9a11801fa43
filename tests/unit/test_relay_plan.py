"""Reconciling the master's list with the running relays: start, keep, stop."""
from __future__ import annotations

from fanout.relay.plan import Plan, RelaySpec, plan_relays
from fanout.relay.puller import BACKOFF_MAX, backoff_delay


def spec(mount: str, port: int = 8000) -> RelaySpec:
    return RelaySpec(mount, "master", port, mount)


def test_new_mounts_are_started():
    assert plan_relays({"/a": spec("/a")}, {}) == Plan((spec("/a"),), (), ())


def test_unchanged_mounts_are_kept():
    assert plan_relays({"/a": spec("/a")}, {"/a": spec("/a")}) == Plan((), ("/a",), ())


def test_vanished_mounts_are_stopped():
    assert plan_relays({}, {"/a": spec("/a")}) == Plan((), (), ("/a",))


def test_an_empty_list_stops_every_relay():
    assert plan_relays({}, {"/a": spec("/a"), "/b": spec("/b")}).stop == ("/a", "/b")


def test_a_changed_upstream_is_restarted():
    plan = plan_relays({"/a": spec("/a", 9000)}, {"/a": spec("/a")})
    assert plan == Plan((spec("/a", 9000),), (), ("/a",))


def test_a_local_source_wins_over_the_masters_mount():
    assert plan_relays({"/a": spec("/a")}, {}, local={"/a"}) == Plan((), (), ())


def test_backoff_starts_under_a_second_doubles_and_is_bounded():
    delays = [backoff_delay(n) for n in range(1, 12)]
    assert delays[0] < 1.0
    assert delays[1] == 2 * delays[0]
    assert max(delays) == BACKOFF_MAX
