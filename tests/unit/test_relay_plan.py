"""Reconciling the master's list with the running relays: start, keep, stop."""
from __future__ import annotations

from fanout.config import parse_config
from fanout.relay.configured import spec_for
from fanout.relay.plan import Plan, RelaySpec, plan_relays
from fanout.worker.relay import BACKOFF_MAX, backoff_delay


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


class CountedName(str):
    """A mount name that counts how often it is compared, and fails past LIMIT comparisons:
    a plan that searched a sequence per mount would compare names n² times."""

    compared = 0
    LIMIT = 10**9

    def __eq__(self, other: object) -> bool:
        CountedName.compared += 1
        assert CountedName.compared <= CountedName.LIMIT, "plan_relays compares names n² times"
        return str.__eq__(self, other)

    __hash__ = str.__hash__


def test_a_huge_list_is_planned_in_linear_work_and_exactly():
    n = 20_000
    names = [CountedName(f"/m{i:05d}") for i in range(2 * n)]
    running = {name: spec(name) for name in names[:n]}
    desired = {CountedName(name): spec(name) for name in names[n // 2:]}  # equal, not identical
    desired[names[n - 1]] = spec(names[n - 1], 9000)  # one changed upstream
    CountedName.compared, CountedName.LIMIT = 0, 20 * n
    plan = plan_relays(desired, running, local={names[n]})
    assert plan.keep == tuple(names[n // 2:n - 1])
    assert plan.stop == (*names[:n // 2], names[n - 1])
    assert [s.mount for s in plan.start] == [names[n - 1], *names[n + 1:]]
    assert plan.start[0].port == 9000


def test_backoff_starts_under_a_second_doubles_and_is_bounded():
    delays = [backoff_delay(n) for n in range(1, 12)]
    assert delays[0] < 1.0
    assert delays[1] == 2 * delays[0]
    assert max(delays) == BACKOFF_MAX


def test_backoff_of_a_configured_relay_is_bounded_by_its_retry_delay():
    assert max(backoff_delay(n, 5.0) for n in range(1, 12)) == 5.0
    assert backoff_delay(1, 5.0) == backoff_delay(1)


# -- configured <relay>s ---------------------------------------------------------------------

RELAYS = """<icecast>
  <master-update-interval>40</master-update-interval>
  <relay><server>a.example</server><port>8001</port><mount>/up</mount>
    <local-mount>/down</local-mount><username>u</username><password>p</password>
    <relay-shoutcast-metadata>0</relay-shoutcast-metadata></relay>
  <relay><server>b.example</server><port>8002</port><mount>/half</mount><username>u</username></relay>
  <relay><local-mount>/kh</local-mount><on-demand>1</on-demand><run-on>7</run-on>
    <retry-delay>9</retry-delay>
    <host><server>c1.example</server><port>8003</port><mount>/one</mount><priority>2</priority></host>
    <host><server>c2.example</server><port>8004</port><mount>/two</mount><priority>1</priority></host>
  </relay>
</icecast>"""


def test_a_configured_relay_becomes_the_spec_of_its_pull():
    flat, half, kh = (spec_for(relay) for relay in parse_config(RELAYS).relays)
    assert flat == RelaySpec("/down", "a.example", 8001, "/up", credentials=("u", "p"),
                             icy_metadata=False, retry_max=40.0)
    assert half.mount == "/half" and half.credentials is None  # 2.4.4: only if both are set
    assert kh.upstreams() == (("c2.example", 8004, "/two"), ("c1.example", 8003, "/one"))
    assert kh.on_demand and kh.run_on == 7.0 and kh.retry_max == 9.0
