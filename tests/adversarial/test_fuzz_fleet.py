"""Fuzz pass over the other peer-facing parsers of issue 12, in test_fuzz.py's harness: the
extended redirect registration (a slave's poll query), the redirect marker, and the
X-Forwarded-For / X-Forwarded-Proto walk.

Threat: a slave (or anyone with relay credentials) sends a registration query, or a
client behind a trusted proxy sends forwarding headers, built to make the master raise,
register garbage, or pick an address that is not one.

Checks: nothing raises; an undamaged registration round-trips exactly; whatever parses
is within its documented bounds (ports, interval, mounts reported, refresh period); the
address `client_address` returns is the peer or a parsed IP address, and its scheme is
http or https.
"""
from __future__ import annotations

import ipaddress
import random
from typing import Any

from fanout.protocol.forwarded import TrustedProxies, client_address
from fanout.protocol.http import HeadParser
from fanout.protocol.redirect import (
    MAX_REFRESH, MAX_REPORTED_MOUNTS, MIN_INTERVAL, MIN_REFRESH, SlaveLoad, is_redirected,
    marked_query, parse_registration, registration_query,
)
from tests.adversarial.test_fuzz import EXTRA, MUTATED, fuzz
from tests.support.fuzzgen import any_value, mutate, number_text

CASES = EXTRA // 2  # each case is a whole poll head of up to 2 KB: 10,000 keep this a few seconds

TRUSTED = TrustedProxies.from_config(["10.0.0.0/8", "::1", "192.168.*"])
_HOSTS = ("relay1.example.org", "10.0.0.2", "::1", "[::1]", "a" * 300, "h%26x", "")


def mount_name(rng: random.Random) -> str:
    return "/" + rng.choice(("live.mp3", "a b+c:d", "x:1", "é", "%2F", "", "a&b=c")) * rng.randint(1, 3)


def registration_case(rng: random.Random) -> tuple[bytes, tuple[str, int, int, SlaveLoad | None] | None]:
    """(a poll's request head, what it registers if undamaged and valid, else None)."""
    host, port, interval = rng.choice(_HOSTS[:3]), rng.randint(1, 65535), rng.randint(5, 600)
    load = None
    if rng.random() < 0.8:
        mounts = {mount_name(rng): rng.randint(0, 10**6) for _ in range(rng.choice((0, 1, 3, 10, 80)))}
        load = SlaveLoad(rng.randint(0, 10**6), rng.randint(0, 10**6), rng.random() < 0.8,
                         rng.choice((None, 0.5, 1.0, 60.0)), tuple(mounts.items()))
    query = registration_query(host, port, interval, load)
    expected = (host, port, interval, load)
    if rng.random() < 0.2:  # junk pairs before or after: ignored when they are new names
        query += "&x" + "".join(rng.choice("abz09-_.~%") for _ in range(rng.randint(0, 12))) + "=1"
    head = f"GET /admin/streams{query} HTTP/1.0\r\n\r\n".encode("utf-8", "surrogateescape")
    if rng.random() < MUTATED:
        damaged = mutate(head, rng)
        if damaged != head:
            return damaged, None
    return head, expected


def check_registration(case: tuple[bytes, Any], rng: random.Random) -> None:
    head, expected = case
    try:
        request = HeadParser().feed(head)
    except Exception as error:
        assert expected is None, error  # only damage makes a head unreadable
        return
    if request is None:
        assert expected is None
        return
    registration = parse_registration(request.query)
    is_redirected(request.query)
    marked_query(request.target.partition("?")[2])
    if expected is not None:
        host, port, interval, load = expected
        assert registration is not None
        assert (registration.host, registration.port, registration.interval) == (host, port, interval)
        if load is not None:
            assert registration.load is not None
            assert registration.load.listeners == load.listeners and registration.load.refresh == load.refresh
            assert set(registration.load.mounts) <= set(load.mounts)
    if registration is not None:
        assert 0 < registration.port < 65536 and registration.interval >= MIN_INTERVAL
        if registration.load is not None:
            assert len(registration.load.mounts) <= MAX_REPORTED_MOUNTS
            assert all(mount.startswith("/") and count >= 0 for mount, count in registration.load.mounts)
            refresh = registration.load.refresh
            assert refresh is None or MIN_REFRESH <= refresh <= MAX_REFRESH


def forwarded_case(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    peer = rng.choice(("10.0.0.9", "203.0.113.5", "::1", "::ffff:10.1.1.1", "192.168.0.1", "bogus"))
    hops = []
    for _ in range(rng.randint(0, 40)):
        kind = rng.random()
        if kind < 0.6:
            hops.append(str(ipaddress.ip_address(rng.getrandbits(32) if rng.random() < 0.7
                                                 else rng.getrandbits(128))))
        else:
            hops.append(any_value(rng).decode("latin-1"))
    headers = [("x-forwarded-for", ",".join(hops))] * rng.randint(0, 2)
    headers += [("x-forwarded-proto", rng.choice(("https", "http", "HTTPS, http", "", "gopher",
                                                  number_text(rng).decode("latin-1"))))] * rng.randint(0, 2)
    if rng.random() < MUTATED:
        headers = [(name, mutate(value.encode("latin-1"), rng).decode("latin-1")) for name, value in headers]
    return peer, headers


def check_forwarded(case: tuple[str, list[tuple[str, str]]], rng: random.Random) -> None:
    peer, headers = case
    result = client_address(peer, headers, TRUSTED)
    assert result.scheme in ("http", "https")
    if result.ip != peer:
        assert result.forwarded and ipaddress.ip_address(result.ip)
        assert TRUSTED.trusts(peer)


def test_fuzz_extended_registration():
    fuzz("extended registration", registration_case, check_registration, CASES)


def test_fuzz_forwarded_for_walk():
    fuzz("x-forwarded-for walk", forwarded_case, check_forwarded, CASES)
