"""Load-aware slave redirect (issue 12 §1–2): the load report in the registration, the
table's choice, expiry on the fast schedule, dead slaves, the loop marker. Pure."""
from __future__ import annotations

import random
from collections import Counter

import pytest

from fanout.protocol.http import HeadParser
from fanout.protocol.redirect import (
    ALWAYS, FAST_REFRESH, MAX_REGISTRATION_QUERY, MAX_REPORTED_MOUNTS, REDIRECT_MARKER,
    REFRESH_HEADER, WHEN_FULL, Registration, SlaveLoad, advertised_capacity, is_redirected,
    marked_query, parse_load, parse_refresh, parse_registration, redirect_location,
    redirect_wanted, refresh_header, registration_query,
)
from fanout.redirects import (
    ADDED, FULL, GRACE, MISSED_REFRESHES, NOMINAL_CAPACITY, REFRESHED, Chooser, RedirectTable,
    Target, choose,
)

LOAD = SlaveLoad(listeners=12, capacity=500, healthy=True, refresh=0.5,
                 mounts=(("/live.mp3", 10), ("/a b+c:d", 2)))


def poll(query: str) -> list[tuple[str, str]]:
    """The query of a poll as the master's request parser decodes it."""
    request = HeadParser().feed(f"GET /admin/streams{query} HTTP/1.0\r\n\r\n".encode())
    assert request is not None
    return list(request.query)


# ---- the registration query -------------------------------------------------------------


def test_a_load_report_rides_after_khs_parameters_in_khs_order():
    text = registration_query("relay1.example.org", 8001, 30, LOAD)
    assert text.startswith("?rserver=relay1.example.org&rport=8001&interval=30&")
    assert "&fanout-listeners=12&fanout-capacity=500&fanout-health=ok&fanout-refresh=0.5" in text


def test_the_extended_query_parses_as_a_registration_with_its_load():
    registration = parse_registration(poll(registration_query("relay1", 8001, 30, LOAD)))
    assert registration == Registration("relay1", 8001, 30, LOAD)


def test_a_kh_registration_has_no_load():
    assert parse_registration(poll("?rserver=h&rport=8000&interval=30")) == \
        Registration("h", 8000, 30, None)


def test_unknown_parameters_are_ignored_wherever_they_are():
    query = poll("?x=1&rserver=h&fanout-future=7&rport=8000&interval=30&fanout-listeners=3"
                 "&fanout-capacity=9&fanout-health=ok&mount=&zz")
    assert parse_registration(query) == \
        Registration("h", 8000, 30, SlaveLoad(3, 9, True, None, ()))


def test_a_kh_master_reads_the_same_three_parameters_from_the_extended_query():
    # KH's redirector_update looks rserver, rport and interval up by name (PROTOCOL.md §2.3)
    # and ignores every other parameter: the extended query gives it the same values.
    extended = dict(poll(registration_query("relay1", 8001, 30, LOAD)))
    plain = dict(poll(registration_query("relay1", 8001, 30)))
    assert {k: extended[k] for k in ("rserver", "rport", "interval")} == plain


@pytest.mark.parametrize("extra", ["fanout-capacity=9", "fanout-listeners=x&fanout-capacity=9",
                                   "fanout-listeners=3&fanout-capacity=-9",
                                   "fanout-listeners=3&fanout-capacity=9&fanout-refresh=0.01",
                                   "fanout-listeners=3&fanout-capacity=9&fanout-refresh=abc"])
def test_a_bad_load_report_leaves_a_valid_registration_without_load(extra):
    assert parse_registration(poll(f"?rserver=h&rport=8000&interval=30&{extra}")) == \
        Registration("h", 8000, 30, None)


def test_a_health_other_than_ok_is_unhealthy():
    load = parse_load(poll("?fanout-listeners=1&fanout-capacity=9&fanout-health=draining"))
    assert load is not None and not load.healthy
    assert not parse_load(poll("?fanout-listeners=1&fanout-capacity=9")).healthy  # type: ignore[union-attr]


def test_mount_names_survive_the_query_encoding():
    load = parse_load(poll(registration_query("h", 1, 30, LOAD)))
    assert load is not None and load.mounts == LOAD.mounts


def test_reported_mounts_are_the_largest_and_bounded():
    many = tuple((f"/m{i:03d}", i) for i in range(200))
    text = registration_query("h", 8000, 30, SlaveLoad(sum(range(200)), 1000, True, 0.5, many))
    load = parse_load(poll(text))
    assert load is not None and load.listeners == sum(range(200))  # the total stays exact
    assert 0 < len(load.mounts) <= MAX_REPORTED_MOUNTS
    assert [count for _, count in load.mounts] == list(range(199, 199 - len(load.mounts), -1))


def test_the_registration_query_fits_an_icecast_masters_head_buffer():
    long_name = "/" + "x" * 300
    many = tuple((f"{long_name}{i}", i) for i in range(100))
    text = registration_query("relay1.example.org", 8000, 30, SlaveLoad(1, 2, True, 0.5, many))
    assert len(text) <= MAX_REGISTRATION_QUERY


def test_the_master_parses_no_more_mounts_than_the_bound():
    query = "&".join(f"fanout-mount=/m{i}:1" for i in range(MAX_REPORTED_MOUNTS + 10))
    load = parse_load(poll(f"?fanout-listeners=1&fanout-capacity=9&{query}"))
    assert load is not None and len(load.mounts) == MAX_REPORTED_MOUNTS


def test_bad_mount_entries_are_skipped():
    load = parse_load(poll("?fanout-listeners=1&fanout-capacity=9&fanout-mount=nomount:3"
                           "&fanout-mount=/a:x&fanout-mount=/b:4&fanout-mount=/b:5"))
    assert load is not None and load.mounts == (("/b", 4),)


def test_refresh_header_round_trips_and_is_bounded():
    name, value = refresh_header()
    assert (name, parse_refresh(value)) == (REFRESH_HEADER, FAST_REFRESH)
    assert [parse_refresh(v) for v in ("0.1", "60", "0.05", "61", "1e3", " 2 ", None)] == \
        [0.1, 60.0, None, None, None, 2.0, None]


def test_capacity_is_the_configured_one_else_the_clients_limit():
    assert advertised_capacity(0, 256) == 256
    assert advertised_capacity(40, 256) == 40


# ---- the Location and the loop marker ---------------------------------------------------


def test_a_marked_location_keeps_scheme_host_path_query_and_credentials():
    location = redirect_location("::1", 8000, "/a b", marked_query("token=abc"), ("u", "p@"))
    assert location == f"http://u:p%40@[::1]:8000/a%20b?token=abc&{REDIRECT_MARKER}=1"
    assert redirect_location("h", 80, "/x", marked_query("")) == f"http://h:80/x?{REDIRECT_MARKER}=1"


def test_the_marker_is_added_once():
    once = marked_query("a=1")
    assert marked_query(once) == once


def test_a_listener_arriving_with_the_marker_is_never_redirected_again():
    location = redirect_location("h", 8000, "/live", marked_query("t=1"))
    request = HeadParser().feed(f"GET {location[len('http://h:8000'):]} HTTP/1.0\r\n\r\n".encode())
    assert request is not None and is_redirected(request.query)
    assert not redirect_wanted(ALWAYS, refused=True, relay=False,
                               redirected=is_redirected(request.query))
    assert not is_redirected(poll("?t=1"))


@pytest.mark.parametrize("mode,refused,relay,expected", [
    (WHEN_FULL, False, False, False), (WHEN_FULL, True, False, True),
    (ALWAYS, False, False, True), (ALWAYS, True, True, False), (WHEN_FULL, True, True, False),
])
def test_who_is_redirected(mode, refused, relay, expected):
    assert redirect_wanted(mode, refused=refused, relay=relay, redirected=False) is expected


# ---- the table --------------------------------------------------------------------------


def load(listeners: int, capacity: int, healthy: bool = True, refresh: float | None = 0.5) -> SlaveLoad:
    return SlaveLoad(listeners, capacity, healthy, refresh)


def test_a_fast_slave_expires_after_missed_refreshes_not_khs_interval():
    table = RedirectTable(4)
    table.register("a", 8000, 120, now=10.0, load=load(0, 100))
    out = 10.0 + MISSED_REFRESHES * 0.5
    assert out - 10.0 <= 2.0  # the bound: out within 2 s of its last registration
    assert table.pick(out - 0.01, random.Random(1)) is not None
    assert table.pick(out, random.Random(1)) is None
    assert table.purge(out)[0].host == "a"


def test_a_kh_slave_still_expires_interval_plus_grace_after_its_poll():
    table = RedirectTable(4)
    table.register("a", 8000, 30, now=0.0)
    assert table.targets()[0].expires == 30 + GRACE


def test_each_refresh_pushes_the_expiry_and_updates_the_load():
    table = RedirectTable(4)
    assert table.register("a", 8000, 30, now=0.0, load=load(0, 100)) == ADDED
    assert table.register("a", 8000, 30, now=1.0, load=load(7, 100)) == REFRESHED
    (target,) = table.targets()
    assert (target.expires, target.load.listeners, target.report) == (2.5, 7, 2)  # type: ignore[union-attr]


def test_a_slave_marked_dead_is_not_chosen_until_it_registers_again():
    table = RedirectTable(4)
    table.register("a", 8000, 30, now=0.0, load=load(0, 100), peer="10.0.0.2")
    table.register("b", 8000, 30, now=0.0, load=load(0, 100), peer="10.0.0.3")
    assert table.mark_dead("a", 8000, now=0.1)
    rng = random.Random(3)
    assert {table.pick(0.2, rng).host for _ in range(50)} == {"b"}  # type: ignore[union-attr]
    table.register("a", 8000, 30, now=0.4, load=load(0, 100), peer="10.0.0.2")
    assert "a" in {table.pick(0.5, rng).host for _ in range(50)}  # type: ignore[union-attr]


def test_relay_pulls_closing_mark_every_slave_polling_from_that_address():
    table = RedirectTable(4)
    table.register("relay1.example.org", 8000, 30, now=0.0, load=load(0, 9), peer="10.0.0.2")
    table.register("other", 8000, 30, now=0.0, load=load(0, 9), peer="10.0.0.3")
    assert [t.host for t in table.mark_dead_from("10.0.0.2", now=1.0)] == ["relay1.example.org"]
    assert not table.mark_dead("nobody", 1, now=1.0)
    assert [t.host for t in table.targets() if t.live(1.0)] == ["other"]


def test_unhealthy_and_full_slaves_are_never_chosen():
    targets = [Target("sick", 1, None, load(0, 100, healthy=False)),
               Target("full", 1, None, load(100, 100)),
               Target("zero", 1, None, load(0, 0)),
               Target("ok", 1, None, load(99, 100))]
    rng = random.Random(5)
    assert {choose(targets, 0.0, rng).host for _ in range(100)} == {"ok"}  # type: ignore[union-attr]


def test_redirects_sent_since_the_last_report_fill_a_slave():
    chooser = Chooser()
    targets = [Target("a", 1, None, load(98, 100))]
    rng = random.Random(1)
    assert [chooser.pick(targets, 0.0, rng) is not None for _ in range(3)] == [True, True, False]
    refreshed = [Target("a", 1, None, load(50, 100), report=1)]  # a new report resets the count
    assert chooser.pick(refreshed, 0.0, rng) is not None


def test_a_slave_whose_complete_mount_list_lacks_the_mount_is_not_chosen_for_it():
    lists = SlaveLoad(0, 100, True, 0.5, (("/a", 0),), mount_count=1)
    cut = SlaveLoad(0, 100, True, 0.5, (("/a", 0),), mount_count=2)  # one more, not listed
    unsaid = SlaveLoad(0, 100, True, 0.5, (("/a", 0),))  # an older slave: no count
    assert (lists.carries("/a"), lists.carries("/b")) == (True, False)
    assert cut.carries("/b") and unsaid.carries("/b")
    targets = [Target("lists", 1, None, lists), Target("cut", 1, None, cut)]
    rng = random.Random(3)
    assert {choose(targets, 0.0, rng, mount="/b").host for _ in range(50)} == {"cut"}  # type: ignore[union-attr]
    assert {choose(targets, 0.0, rng, mount="/a").host for _ in range(50)} == {"lists", "cut"}  # type: ignore[union-attr]


def test_the_mount_count_rides_in_the_query_and_parses_back():
    report = SlaveLoad(3, 9, True, 0.5, (("/a", 3),), mount_count=4)
    text = registration_query("relay1", 8001, 30, report)
    assert "&fanout-refresh=0.5&fanout-mount-count=4&fanout-mount=/a:3" in text
    assert parse_registration(poll(text)) == Registration("relay1", 8001, 30, report)


def test_the_requester_itself_is_never_chosen():
    targets = [Target("10.0.0.2", 8000, None, load(0, 100)),
               Target("relay3", 8000, None, load(0, 100), peer="10.0.0.3"),
               Target("10.0.0.4", 8000, None, load(90, 100))]
    rng = random.Random(2)
    picks = {choose(targets, 0.0, rng, exclude={"10.0.0.2", "10.0.0.3"}).host for _ in range(50)}  # type: ignore[union-attr]
    assert picks == {"10.0.0.4"}


@pytest.mark.parametrize("seed", range(20))
def test_300_arrivals_end_within_10_percent_of_capacity_proportions(seed):
    # Three slaves of capacity 100/200/300, empty, reporting every 20 arrivals what they
    # have (the redirects in between counted by the chooser): 50/100/150 each within 10 %.
    capacities = {"a": 100, "b": 200, "c": 300}
    table = RedirectTable(3)
    got: Counter[str] = Counter()
    rng = random.Random(seed)
    for arrival in range(300):
        if arrival % 20 == 0:
            for host, capacity in capacities.items():
                table.register(host, 8000, 30, now=arrival / 100, load=load(got[host], capacity))
        got[table.pick(arrival / 100, rng).host] += 1  # type: ignore[union-attr]
    for host, capacity in capacities.items():
        assert abs(got[host] - capacity / 2) <= 0.1 * capacity / 2, (host, got)


def test_two_choosers_on_the_same_report_do_not_herd_onto_one_slave():
    # Two workers (or masters) deciding on the same snapshot: always-the-emptiest would send
    # both streams of arrivals to "a"; two random choices spread them.
    targets = [Target(h, 1, None, load(n, 100)) for h, n in (("a", 10), ("b", 11), ("c", 12))]
    first, second = Chooser(), Chooser()
    rng = random.Random(9)
    picks = Counter(chooser.pick(targets, 0.0, rng).host  # type: ignore[union-attr]
                    for _ in range(5) for chooser in (first, second))
    assert len(picks) >= 2 and picks["a"] < 10


def test_unknown_load_targets_count_nominal_room_filled_by_our_redirects():
    chooser = Chooser()
    targets = [Target("kh1", 1, None), Target("kh2", 1, None)]
    rng = random.Random(4)
    picks = Counter(chooser.pick(targets, 0.0, rng).host for _ in range(100))  # type: ignore[union-attr]
    assert picks == Counter({"kh1": 50, "kh2": 50})  # balanced, never "full"
    assert Target("kh", 1, None).utilisation(NOMINAL_CAPACITY) == 1.0


def test_static_targets_never_expire_and_report_no_load():
    table = RedirectTable(0, static=[("s", 8000)])
    assert table.register("a", 8000, 30, now=0.0, load=load(0, 9)) == FULL
    assert table.pick(1e9, random.Random(1)).host == "s"  # type: ignore[union-attr]
