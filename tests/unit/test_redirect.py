"""KH slave redirect: registration, the master's table, the 302's Location (pure)."""
from __future__ import annotations

import random

import pytest

from fanout.protocol.redirect import (Registration, parse_registration, redirect_location,
                                      registration_query)
from fanout.redirects import ADDED, FULL, GRACE, REFRESHED, RedirectTable, Target, choose


def query(text: str) -> list[tuple[str, str]]:
    return [tuple(pair.partition("=")[::2]) for pair in text.split("&")]  # type: ignore[misc]


def test_a_registration_round_trips_through_the_poll_query():
    text = registration_query("relay1.example.org", 8001, 30)
    assert text == "?rserver=relay1.example.org&rport=8001&interval=30"
    assert parse_registration(query(text[1:])) == Registration("relay1.example.org", 8001, 30)


@pytest.mark.parametrize("text", ["rport=8000&interval=30", "rserver=&rport=8000&interval=30",
                                  "rserver=h&rport=0&interval=30", "rserver=h&rport=70000&interval=30",
                                  "rserver=h&rport=x&interval=30", "rserver=h&rport=8000&interval=4",
                                  "rserver=h&rport=8000", "mount=/a"])
def test_an_incomplete_or_invalid_registration_is_ignored(text):
    assert parse_registration(query(text)) is None


def test_location_keeps_the_query_and_the_listeners_credentials_encoded():
    assert redirect_location("10.0.0.2", 8000, "/live.mp3", "token=abc") == \
        "http://10.0.0.2:8000/live.mp3?token=abc"
    assert redirect_location("h", 80, "/a b", "", ("us er", "p@ss:w")) == \
        "http://us%20er:p%40ss%3Aw@h:80/a%20b"
    assert redirect_location("::1", 8000, "/x", "") == "http://[::1]:8000/x"


def test_slaves_are_added_up_to_the_limit_static_targets_included():
    table = RedirectTable(2, static=[("static", 8000)])
    assert table.register("a", 8000, 5, now=0) == ADDED
    assert table.register("b", 8000, 5, now=0) == FULL
    assert table.register("a", 8000, 5, now=1) == REFRESHED
    assert [(t.host, t.expires) for t in table.targets()] == [("static", None), ("a", 1 + 5 + GRACE)]


def test_static_targets_exist_even_with_no_room_for_slaves():
    table = RedirectTable(0, static=[("s1", 8000), ("s2", 8001)])
    assert table.register("a", 8000, 5, now=0) == FULL
    assert len(table.targets()) == 2


def test_a_slave_that_stops_polling_expires_and_frees_its_place():
    table = RedirectTable(1)
    table.register("a", 8000, 5, now=0)
    assert choose(table.targets(), now=5 + GRACE - 0.1) is not None
    assert choose(table.targets(), now=5 + GRACE) is None  # expired: never chosen
    assert table.register("b", 8000, 5, now=5 + GRACE) == ADDED
    assert [t.host for t in table.targets()] == ["b"]


def test_a_reload_keeps_registered_slaves_within_the_new_limit():
    table = RedirectTable(3)
    for host in ("a", "b", "c"):
        table.register(host, 8000, 5, now=0)
    table.reconfigure(2, static=[("s", 8000)])
    assert [t.host for t in table.targets()] == ["s", "a"]


def test_choice_is_uniform_among_live_targets():
    targets = [Target("dead", 1, 0.0), Target("a", 1, None), Target("b", 1, 100.0)]
    rng = random.Random(7)
    picks = [choose(targets, now=50, rng=rng).host for _ in range(2000)]  # type: ignore[union-attr]
    assert set(picks) == {"a", "b"}
    assert 800 < picks.count("a") < 1200
