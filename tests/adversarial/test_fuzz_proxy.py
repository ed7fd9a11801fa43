"""Fuzz pass over the PROXY protocol parser (issue 12 §5), in tests/adversarial/test_fuzz.py's
harness: seeded structure-aware inputs, a share damaged byte by byte, each fed whole and in
random splits.

Threat: whatever reaches a `<proxy-protocol>1` port (a broken balancer, or anyone who can
connect to it) sends bytes that make the parser raise something undocumented, hold more
than its bound, or disagree with itself depending on how TCP split the bytes.

Every case checks: only ProtocolError with CLOSE_SILENTLY escapes; fed whole and in random
pieces the outcome is the same (header and leftover, or the same refusal); the leftover is
exactly the input's tail after the header; an undamaged generated header parses to what
was generated. Replay one case with FANOUT_FUZZ_SEED / FANOUT_FUZZ_CASE as in test_fuzz.py.
"""
from __future__ import annotations

import ipaddress
import random
import struct
from typing import Any

from fanout.protocol.errors import CLOSE_SILENTLY, ProtocolError
from fanout.protocol.proxy import (
    IPV4, IPV6, LOCAL, MAX_V2_PAYLOAD, PROXY, UNIX, UNSPEC, V2_SIGNATURE, ProxyHeader,
    ProxyHeaderParser,
)
from tests.adversarial.test_fuzz import EXTRA, MUTATED, fuzz
from tests.support.fuzzgen import mutate, pieces, some_bytes

CASES = EXTRA  # 20,000 inputs (issue 12: at least that many)
_FAMILY_NIBBLE = {UNSPEC: 0x0, IPV4: 0x1, IPV6: 0x2, UNIX: 0x3}
_REQUESTS = (b"", b"GET / HTTP/1.0\r\n\r\n", b"SOURCE /live ICE/1.0\r\n", b"PROXY TCP4 ")


def address(rng: random.Random, family: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    if family == IPV4:
        return ipaddress.IPv4Address(rng.getrandbits(32))
    return ipaddress.IPv6Address(rng.getrandbits(128))


def v1_header(rng: random.Random) -> tuple[bytes, ProxyHeader]:
    if rng.random() < 0.15:
        tail = b"" if rng.random() < 0.5 else b" " + some_bytes(rng, 0, 80).replace(b"\n", b"")
        return b"PROXY UNKNOWN" + tail[:92] + b"\r\n", ProxyHeader(1, PROXY, UNSPEC, None, None)
    family = rng.choice((IPV4, IPV6))
    src, dst = address(rng, family), address(rng, family)
    sport, dport = rng.randint(0, 65535), rng.randint(0, 65535)
    line = f"PROXY {'TCP4' if family == IPV4 else 'TCP6'} {src} {dst} {sport} {dport}\r\n"
    return line.encode(), ProxyHeader(1, PROXY, family, (str(src), sport), (str(dst), dport))


def v2_header(rng: random.Random) -> tuple[bytes, ProxyHeader]:
    command = rng.choice((LOCAL, PROXY, PROXY, PROXY))
    family = rng.choice((IPV4, IPV4, IPV6, IPV6, UNIX, UNSPEC))
    transport = rng.choice((0x1, 0x1, 0x1, 0x0))
    payload, source, destination = b"", None, None
    if family in (IPV4, IPV6):
        src, dst = address(rng, family), address(rng, family)
        ports = rng.randint(0, 65535), rng.randint(0, 65535)
        payload = src.packed + dst.packed + struct.pack("!HH", *ports)
        source, destination = (str(src), ports[0]), (str(dst), ports[1])
    elif family == UNIX:
        payload = some_bytes(rng, 216, 216)
    while rng.random() < 0.5 and len(payload) < MAX_V2_PAYLOAD - 300:
        value = some_bytes(rng, 0, 200)
        payload += bytes([rng.randrange(256)]) + struct.pack("!H", len(value)) + value
    usable = command == PROXY and transport == 0x1 and family in (IPV4, IPV6)
    expected = ProxyHeader(2, command, family, source if usable else None,
                           destination if usable else None)
    head = bytes([0x20 | (command == PROXY), _FAMILY_NIBBLE[family] << 4 | transport])
    return V2_SIGNATURE + head + struct.pack("!H", len(payload)) + payload, expected


def proxy_case(rng: random.Random) -> tuple[bytes, ProxyHeader | None, int]:
    """(input, the header it holds if undamaged else None, the header's length)."""
    header, expected = (v1_header if rng.random() < 0.5 else v2_header)(rng)
    data = header + rng.choice(_REQUESTS) + some_bytes(rng, 0, 8)
    if rng.random() < MUTATED:
        damaged = mutate(data, rng)
        if damaged != data:
            return damaged, None, 0
    return data, expected, len(header)


def outcome(chunks: list[bytes]) -> tuple[Any, ...]:
    parser = ProxyHeaderParser()
    try:
        for number, chunk in enumerate(chunks):
            header = parser.feed(chunk)
            if header is not None:
                return header, parser.leftover + b"".join(chunks[number + 1:])
    except ProtocolError as error:
        assert error.status == CLOSE_SILENTLY
        return "refused", error.message
    return ("incomplete",)


def check_proxy(case: tuple[bytes, ProxyHeader | None, int], rng: random.Random) -> None:
    data, expected, length = case
    whole = outcome([data])
    assert outcome(pieces(data, rng, byte_by_byte=0.01)) == whole
    if isinstance(whole[0], ProxyHeader):
        assert data.endswith(whole[1]) and len(whole[1]) < len(data)
    if expected is not None:
        assert whole == (expected, data[length:])


def test_generated_proxy_headers_mostly_parse():
    # The generator must keep reaching the parser's address and TLV code, not just its
    # first check: most undamaged cases parse, and some damaged ones still do.
    results = [(case[1] is not None, outcome([case[0]])[0])
               for case in (proxy_case(random.Random(i)) for i in range(2000))]
    parsed = sum(isinstance(result, ProxyHeader) for _, result in results)
    damaged_parsed = sum(isinstance(result, ProxyHeader) for clean, result in results if not clean)
    assert parsed > 1200 and damaged_parsed > 20


def test_fuzz_proxy_header_parser():
    fuzz("proxy header", proxy_case, check_proxy, CASES)
