"""X-Forwarded-For / X-Forwarded-Proto from trusted proxies only (issue 12 §5). Pure."""
from __future__ import annotations

import pytest

from fanout.protocol.forwarded import (
    MAX_HOPS, ClientAddress, TrustedProxies, client_address, proxy_header_allowed,
)

TRUSTED = TrustedProxies.from_config(["10.0.0.0/8", "::1", "192.168.*"])


def xff(*values: str, proto: str | None = None) -> list[tuple[str, str]]:
    headers = [("x-forwarded-for", value) for value in values]
    return headers + ([("x-forwarded-proto", proto)] if proto is not None else [])


def test_an_untrusted_peer_keeps_its_address_and_its_headers_are_ignored():
    assert client_address("203.0.113.5", xff("1.2.3.4", proto="https"), TRUSTED) == \
        ClientAddress("203.0.113.5", "http", False)


def test_a_trusted_proxy_gives_the_address_it_got_the_connection_from():
    assert client_address("10.1.2.3", xff("198.51.100.7", proto="https"), TRUSTED) == \
        ClientAddress("198.51.100.7", "https", True)


def test_the_walk_goes_right_to_left_through_trusted_proxies_only():
    # The client forged "6.6.6.6"; the first proxy (192.168.1.1) saw 198.51.100.7.
    headers = xff("6.6.6.6, 198.51.100.7, 192.168.1.1")
    assert client_address("10.0.0.9", headers, TRUSTED).ip == "198.51.100.7"


def test_a_chain_of_only_trusted_hops_ends_at_its_leftmost():
    assert client_address("::1", xff("10.0.0.5", "192.168.0.2"), TRUSTED).ip == "10.0.0.5"


def test_repeated_headers_join_as_one_list_in_order():
    headers = xff("6.6.6.6", "198.51.100.7")
    assert client_address("10.0.0.9", headers, TRUSTED).ip == "198.51.100.7"


def test_garbage_stops_the_walk_at_the_trusted_hop_that_wrote_it():
    assert client_address("10.0.0.9", xff("198.51.100.7, unknown, 10.0.0.8"), TRUSTED).ip == "10.0.0.8"
    assert client_address("10.0.0.9", xff("nonsense"), TRUSTED) == ClientAddress("10.0.0.9", "http", False)


def test_ipv4_mapped_and_blank_padded_entries_read_as_ipv4():
    assert client_address("10.0.0.9", xff(" ::ffff:198.51.100.7 "), TRUSTED).ip == "198.51.100.7"
    assert client_address("::ffff:10.0.0.9", xff("198.51.100.7"), TRUSTED).ip == "198.51.100.7"


@pytest.mark.parametrize("proto,expected", [("https", "https"), ("HTTPS", "https"),
                                            ("gopher", "http"), ("http, https", "https")])
def test_forwarded_proto_is_taken_only_as_http_or_https(proto, expected):
    assert client_address("10.0.0.9", xff("198.51.100.7", proto=proto), TRUSTED).scheme == expected


def test_forwarded_proto_follows_the_hop_when_the_lists_match():
    headers = xff("198.51.100.7, 192.168.0.2", proto="https, http")
    assert client_address("10.0.0.9", headers, TRUSTED) == ClientAddress("198.51.100.7", "https", True)


def test_forwarded_proto_alone_from_a_trusted_proxy_sets_the_scheme():
    assert client_address("10.0.0.9", [("x-forwarded-proto", "https")], TRUSTED) == \
        ClientAddress("10.0.0.9", "https", False)


def test_the_walk_reads_at_most_max_hops_entries():
    headers = xff(", ".join(["10.0.0.1"] * (MAX_HOPS * 10)) + ", 10.0.0.2")
    assert client_address("10.0.0.9", headers, TRUSTED).ip == "10.0.0.1"


def test_kh_shell_patterns_match_the_address_text():
    proxies = TrustedProxies.from_config(["192.168.*", "2001:db8::*"])
    assert proxies.trusts("192.168.4.4") and proxies.trusts("2001:db8::7")
    assert not proxies.trusts("192.169.0.1") and not proxies.trusts("not an address")


def test_no_trusted_proxies_trusts_nobody_but_allows_proxy_headers_on_their_port():
    nobody = TrustedProxies.from_config([])
    assert not nobody.trusts("127.0.0.1")
    assert client_address("127.0.0.1", xff("1.2.3.4"), nobody).ip == "127.0.0.1"
    assert proxy_header_allowed("203.0.113.5", nobody)
    assert not proxy_header_allowed("203.0.113.5", TRUSTED)
    assert proxy_header_allowed("10.9.9.9", TRUSTED)
