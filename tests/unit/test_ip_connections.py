"""Connections per client address, counted across processes (`Counters.ip_connections`)."""
from __future__ import annotations

import ipaddress

import pytest

from fanout.counters import IP_BUCKETS, IP_HASHES, Counters, ip_buckets


@pytest.fixture
def counters():
    owner = Counters.create()
    yield owner
    owner.close()


def test_every_process_row_counts_toward_one_total(counters):
    other = Counters.attach(counters.fd)  # another process's mapping
    counters.add_ip(0, "198.51.100.1", 1)
    other.add_ip(1, "198.51.100.1", 2)
    assert counters.ip_connections("198.51.100.1") == other.ip_connections("198.51.100.1") == 3
    other.add_ip(1, "198.51.100.1", -2)
    assert counters.ip_connections("198.51.100.1") == 1
    other._ips.release()
    other._map.close()


def test_a_dead_workers_connections_are_forgotten_with_its_row(counters):
    counters.add_ip(3, "2001:db8::1", 5)
    counters.add_ip(4, "2001:db8::1", 1)
    counters.reset_row(3)
    assert counters.ip_connections("2001:db8::1") == 1


def test_a_count_never_goes_below_zero(counters):
    counters.add_ip(0, "192.0.2.1", -1)
    assert counters.ip_connections("192.0.2.1") == 0


def test_buckets_are_the_same_in_every_process_and_within_the_tables():
    # A keyed hash, not Python's salted hash(): fixed values, one bucket per table.
    buckets = ip_buckets("192.0.2.1")
    assert buckets == ip_buckets("192.0.2.1") and len(buckets) == IP_HASHES
    assert all(table * IP_BUCKETS <= b < (table + 1) * IP_BUCKETS for table, b in enumerate(buckets))


def test_one_address_at_its_limit_does_not_refuse_the_others(counters):
    # What a false refusal needs: an address sharing *both* its buckets with a heavy one.
    # 2,000 light addresses (1 connection each) beside one at a 1000-connection limit:
    # none of them is seen anywhere near it (a shared bucket adds only light neighbours).
    counters.add_ip(0, "203.0.113.200", 1000)
    addresses = [str(ipaddress.ip_address("10.0.0.0") + n) for n in range(2000)]
    for address in addresses:
        counters.add_ip(1, address, 1)
    counts = [counters.ip_connections(address) for address in addresses]
    assert min(counts) == 1  # never under-counted
    assert max(counts) < 10
    assert counters.ip_connections("203.0.113.200") >= 1000
