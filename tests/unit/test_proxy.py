"""PROXY protocol v1/v2 header parser (issue 12 §5): each case fed whole, byte by byte and
in random splits gives the same header (or error) and the same leftover. Pure."""
from __future__ import annotations

import random
import struct

import pytest

from fanout.protocol.errors import CLOSE_SILENTLY, ProtocolError
from fanout.protocol.proxy import (
    IPV4, IPV6, LOCAL, MAX_V1_LINE, MAX_V2_PAYLOAD, PROXY, UNIX, UNSPEC, V2_SIGNATURE,
    ProxyHeader, ProxyHeaderParser,
)
from tests.support.splits import random_pieces

REQUEST = b"GET /live.mp3 HTTP/1.0\r\n\r\n"
PEER = ("10.0.0.1", 40000)


def v2(command: int, family: int, payload: bytes) -> bytes:
    return V2_SIGNATURE + bytes([0x20 | command, family]) + struct.pack("!H", len(payload)) + payload


def inet4(src: str, dst: str, sport: int, dport: int) -> bytes:
    return bytes(map(int, src.split("."))) + bytes(map(int, dst.split("."))) + struct.pack("!HH", sport, dport)


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


def outcomes(data: bytes, seed: int = 1) -> list[object]:
    """What the parser makes of `data` fed whole, byte by byte and in random splits."""
    rng = random.Random(seed)
    splits = [[data], [data[i:i + 1] for i in range(len(data))],
              *(random_pieces(data, rng, 9) for _ in range(5))]
    return [outcome(pieces) for pieces in splits]


def outcome(pieces: list[bytes]) -> object:
    parser = ProxyHeaderParser()
    try:
        for number, piece in enumerate(pieces):
            header = parser.feed(piece)
            if header is not None:
                return header, parser.leftover + b"".join(pieces[number + 1:])
    except ProtocolError as error:
        assert error.status == CLOSE_SILENTLY
        return "refused", error.message
    return "incomplete"


def parsed(data: bytes) -> object:
    results = outcomes(data)
    assert all(result == results[0] for result in results), results
    return results[0]


GOOD = [
    (b"PROXY TCP4 192.0.2.7 10.0.0.2 51000 8000\r\n",
     ProxyHeader(1, PROXY, IPV4, ("192.0.2.7", 51000), ("10.0.0.2", 8000))),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n",
     ProxyHeader(1, PROXY, IPV6, ("2001:db8::7", 65535), ("2001:db8::1", 0))),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(1, PROXY, UNSPEC, None, None)),
    (b"PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 65535 65535\r\n", ProxyHeader(1, PROXY, UNSPEC, None, None)),
    (v2(1, 0x11, inet4("198.51.100.9", "10.0.0.2", 1234, 8000)),
     ProxyHeader(2, PROXY, IPV4, ("198.51.100.9", 1234), ("10.0.0.2", 8000))),
    (v2(1, 0x21, bytes(15) + b"\x01" + bytes(15) + b"\x02" + struct.pack("!HH", 5, 6)),
     ProxyHeader(2, PROXY, IPV6, ("::1", 5), ("::2", 6))),
    (v2(1, 0x11, inet4("198.51.100.9", "10.0.0.2", 1, 2) + tlv(0x01, b"h2") + tlv(0x20, bytes(40))
        + tlv(0xEA, b"vpce-0123")),  # ALPN, SSL and an AWS TLV: skipped
     ProxyHeader(2, PROXY, IPV4, ("198.51.100.9", 1), ("10.0.0.2", 2))),
    (v2(0, 0x11, inet4("198.51.100.9", "10.0.0.2", 1, 2)), ProxyHeader(2, LOCAL, IPV4, None, None)),
    (v2(0, 0x00, b""), ProxyHeader(2, LOCAL, UNSPEC, None, None)),
    (v2(1, 0x00, b""), ProxyHeader(2, PROXY, UNSPEC, None, None)),
    (v2(1, 0x31, bytes(216)), ProxyHeader(2, PROXY, UNIX, None, None)),
    (v2(1, 0x10, inet4("1.2.3.4", "5.6.7.8", 1, 2)), ProxyHeader(2, PROXY, IPV4, None, None)),
]


@pytest.mark.parametrize("header,expected", GOOD)
def test_a_header_parses_the_same_however_it_is_split_and_leaves_the_request(header, expected):
    assert parsed(header + REQUEST) == (expected, REQUEST)


def test_the_client_is_the_source_or_else_the_peer():
    assert GOOD[0][1].client(PEER) == ("192.0.2.7", 51000)
    assert ProxyHeader(2, LOCAL, IPV4, None, None).client(PEER) == PEER


BAD = [
    (b"GET / HTTP/1.0\r\n\r\n", "does not start with one"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.2 51000\r\n", "v1 line is not"),
    (b"PROXY TCP4  192.0.2.7 10.0.0.2 51000 8000\r\n", "v1 line is not"),
    (b"PROXY TCP5 192.0.2.7 10.0.0.2 51000 8000\r\n", "v1 line is not"),
    (b"PROXY TCP4 2001:db8::7 10.0.0.2 1 2\r\n", "not an IPv4 address"),
    (b"PROXY TCP6 192.0.2.7 2001:db8::1 1 2\r\n", "not an IPv6 address"),
    (b"PROXY TCP4 192.0.2.07 10.0.0.2 1 2\r\n", "not an IPv4 address"),
    (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "not an IPv6 address"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.2 65536 2\r\n", "not a port"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.2 01 2\r\n", "not a port"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.2 1 -2\r\n", "not a port"),
    (b"PROXY TCP4 192.0.2.7 10.0.0.2 1 2\n", "not ended by CRLF"),
    (b"PROXY TCP4 \xff.0.2.7 10.0.0.2 1 2\r\n", "not an IPv4 address"),
    (b"PROXY UNKNOWN " + b"x" * MAX_V1_LINE + b"\r\n", "longer than 107"),
    (V2_SIGNATURE + bytes([0x11, 0x11, 0, 12]) + bytes(12), "version/command"),
    (V2_SIGNATURE + bytes([0x22, 0x11, 0, 12]) + bytes(12), "version/command"),
    (V2_SIGNATURE + bytes([0x21, 0x41, 0, 12]) + bytes(12), "family/transport"),
    (V2_SIGNATURE + bytes([0x21, 0x13, 0, 12]) + bytes(12), "family/transport"),
    (v2(1, 0x12, inet4("1.2.3.4", "5.6.7.8", 1, 2)), "datagram"),
    (v2(1, 0x11, bytes(11)), "cut short"),
    (v2(1, 0x21, bytes(35)), "cut short"),
    (v2(1, 0x31, bytes(100)), "cut short"),
    (V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", MAX_V2_PAYLOAD + 1), "at most 4096"),
]


@pytest.mark.parametrize("data,why", BAD)
def test_a_bad_header_is_refused_the_same_however_it_is_split(data, why):
    result = parsed(data + REQUEST)
    assert isinstance(result, tuple) and result[0] == "refused" and why in str(result[1])


def test_a_v1_line_of_exactly_107_bytes_is_taken():
    line = b"PROXY UNKNOWN " + b"x" * (MAX_V1_LINE - 16) + b"\r\n"
    assert len(line) == MAX_V1_LINE
    assert parsed(line)[0].family == UNSPEC  # type: ignore[index]


def test_the_largest_v2_header_is_taken_and_one_byte_more_is_not():
    payload = inet4("1.2.3.4", "5.6.7.8", 1, 2) + tlv(0x04, bytes(MAX_V2_PAYLOAD - 12 - 3))
    assert len(payload) == MAX_V2_PAYLOAD
    assert parsed(v2(1, 0x11, payload))[0].source == ("1.2.3.4", 1)  # type: ignore[index]
    assert parsed(v2(1, 0x11, payload + b"x"))[0] == "refused"  # type: ignore[index]


@pytest.mark.parametrize("prefix", [b"", b"PRO", b"PROXY TCP4 1.2.3.4", V2_SIGNATURE[:5],
                                    V2_SIGNATURE + b"\x21\x11\x00", v2(1, 0x11, bytes(12))[:-1]])
def test_a_prefix_of_a_header_waits_for_more(prefix):
    assert ProxyHeaderParser().feed(prefix) is None


def test_the_parser_never_holds_more_than_its_bound():
    parser = ProxyHeaderParser()
    with pytest.raises(ProtocolError):
        for _ in range(MAX_V1_LINE):
            parser.feed(b"PROXY " if _ == 0 else b"x")
