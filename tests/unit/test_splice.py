"""A relay's new connection continues its ring exactly (fanout/ringio.py `splice`): the
upstream's burst repeats the ring's last bytes, and what it overlaps is dropped, with or
without inline ICY blocks; no overlap is said so (a seam), and Ogg with inline ICY is
never joined. Over a real socketpair, the burst sent in random pieces."""
from __future__ import annotations

import random
import socket

import gevent
import pytest
from gevent import socket as gsocket

from fanout import core
from fanout.protocol.icy import IcyStripper
from fanout.ringio import SPLICE_TAIL, splice

CAPACITY = 1 << 20
# The ring holds this much of the stream when the new connection comes; the burst starts
# OVERLAP bytes before its end and brings AHEAD new bytes.
IN_RING = 300_000
OVERLAP = 3 * SPLICE_TAIL
AHEAD = 50_000
METAINT = 8192
TITLE = b"StreamTitle='next';"


def stream(length: int) -> bytes:
    """Random bytes (seeded): no SPLICE_TAIL-long run of them repeats."""
    rng = random.Random(7)
    return bytes(rng.getrandbits(8) for _ in range(length))


def with_icy(audio: bytes, metaint: int) -> bytes:
    """`audio` as an upstream sends it with Icy-MetaData: a block after every `metaint`
    bytes (the first one with a title, the others empty)."""
    out = bytearray()
    for index, start in enumerate(range(0, len(audio), metaint)):
        chunk = audio[start:start + metaint]
        out += chunk
        if len(chunk) == metaint:
            if index == 0:
                units = len(TITLE) // 16 + 1
                out += bytes([units]) + TITLE.ljust(16 * units, b"\0")
            else:
                out += b"\0"
    return bytes(out)


@pytest.fixture
def ring():
    ring = core.Ring.create(CAPACITY, core.FORMAT_GENERIC)
    yield ring
    ring.close()


def connection(raw: bytes, seed: int, close: bool = True) -> gsocket.socket:
    """Our end of a socketpair whose peer sends `raw` in random pieces (then closes)."""
    ours, peer = socket.socketpair()
    rng, pos = random.Random(seed), 0
    pieces = []
    while pos < len(raw):
        size = rng.randint(1, 20_000)
        pieces.append(raw[pos:pos + size])
        pos += size

    def send() -> None:
        for piece in pieces:
            peer.sendall(piece)
        if close:
            peer.close()

    sock = gsocket.socket(fileno=ours.detach())
    sock.settimeout(5)
    gevent.spawn(send)
    return sock


def test_a_burst_that_repeats_the_rings_tail_continues_it_exactly(ring):
    data = stream(IN_RING + AHEAD)
    ring.write(data[:IN_RING])
    burst = data[IN_RING - OVERLAP:]
    sock = connection(burst[1000:], seed=1)
    spliced = splice(ring, sock, burst[:1000], 0)
    assert spliced.found and spliced.overlap == OVERLAP and spliced.rest == b""
    received = spliced.audio + read_all(sock)
    assert received == data[IN_RING:]


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_with_inline_icy_the_rest_starts_at_a_metadata_interval(ring, seed):
    data = stream(IN_RING + AHEAD)
    ring.write(data[:IN_RING])
    start = IN_RING - OVERLAP - 1234  # the upstream's burst point: anywhere
    raw = with_icy(data[start:], METAINT)
    sock = connection(raw, seed=seed)
    spliced = splice(ring, sock, b"", METAINT)
    assert spliced.found and spliced.overlap == OVERLAP + 1234
    assert (spliced.overlap + len(spliced.audio)) % METAINT == 0  # cut after whole blocks
    after, titles = IcyStripper(METAINT).feed(spliced.rest + read_all(sock))
    assert spliced.audio + after == data[IN_RING:]
    assert [t.rstrip(b"\0") for t in spliced.titles + titles if t.rstrip(b"\0")] == [TITLE]


def test_a_burst_that_does_not_repeat_the_tail_is_a_seam(ring):
    ring.write(stream(IN_RING))
    other = bytes(range(256)) * 100
    sock = connection(other, seed=5)
    spliced = splice(ring, sock, b"", 0)
    assert not spliced.found and spliced.overlap == 0
    assert spliced.audio + read_all(sock) == other


def test_ogg_with_inline_icy_is_never_joined(ring):
    data = stream(IN_RING + AHEAD)
    ring.write(data[:IN_RING])
    sock = connection(with_icy(data[IN_RING - OVERLAP:], METAINT), seed=6)
    assert not splice(ring, sock, b"", METAINT, ogg=True).found


def read_all(sock: gsocket.socket) -> bytes:
    out = bytearray()
    while chunk := sock.recv(65536):
        out += chunk
    sock.close()
    return bytes(out)
