"""send_many into real socketpairs: exact bytes, ICY interleave, partial sends, statuses."""
from __future__ import annotations

import errno
import fcntl
import random
import socket

import pytest

from .conftest import SMALL_CAPACITY
from .streams import Pass, drain, expected_icy_stream, icy_block, parse_icy_stream

GUARD = 65536
LAG_LIMIT = SMALL_CAPACITY - GUARD
HEAD = b"HTTP/1.0 200 OK\r\nicy-metaint: 16\r\n\r\n"


def make_listener(core, tx, pos=0, lag_limit=LAG_LIMIT, metaint=0, prefix=b""):
    return core.Listener(tx.fileno(), pos, lag_limit, metaint, prefix)


def fill_socket(tx: socket.socket) -> None:
    """Write to tx until the kernel refuses more."""
    while True:
        try:
            tx.send(bytes(4096))
        except BlockingIOError:
            return


# -- basics ---------------------------------------------------------------------------

def test_listener_defaults(core, socket_pair):
    tx, _ = socket_pair()
    lis = make_listener(core, tx, pos=5, metaint=8000, prefix=b"head")
    assert (lis.fd, lis.pos, lis.lag_limit, lis.metaint) == (tx.fileno(), 5, LAG_LIMIT, 8000)
    assert (lis.meta_left, lis.meta_gen, lis.sent, lis.audio_sent) == (8000, 0, 0, 0)
    assert lis.prefix_left == 4 and lis.tag is None
    lis.tag = {"any": "object"}
    lis.pos = 9
    assert lis.tag == {"any": "object"} and lis.pos == 9


def test_prefix_goes_before_ring_bytes(core, ring, socket_pair):
    tx, rx = socket_pair()
    ring.write(b"audio")
    lis = make_listener(core, tx, prefix=HEAD)
    assert core.send_many(ring, [lis], 1000) == []
    assert drain(rx) == HEAD + b"audio"
    assert (lis.pos, lis.sent, lis.audio_sent, lis.prefix_left) == (5, len(HEAD) + 5, 5, 0)


def test_prefix_is_sent_without_ring_data(core, ring, socket_pair):
    tx, rx = socket_pair()
    lis = make_listener(core, tx, prefix=HEAD)
    assert core.send_many(ring, [lis], 1000) == []
    assert drain(rx) == HEAD and lis.prefix_left == 0


def test_caught_up_listener_is_not_listed_and_sends_nothing(core, ring, socket_pair):
    tx, rx = socket_pair()
    ring.write(b"abc")
    lis = make_listener(core, tx, pos=3)
    assert core.send_many(ring, [lis], 1000) == []
    assert lis.sent == 0 and drain(rx) == b""


def test_budget_limits_ring_bytes_per_pass_but_not_the_prefix(core, ring, socket_pair):
    tx, rx = socket_pair()
    data = random.Random(5).randbytes(5000)
    ring.write(data)
    lis = make_listener(core, tx, prefix=HEAD)
    assert core.send_many(ring, [lis], 1000) == []
    assert (lis.pos, lis.sent) == (1000, len(HEAD) + 1000)
    assert core.send_many(ring, [lis], 0) == [] and lis.pos == 1000
    assert core.send_many(ring, [lis], 10**6) == []
    assert drain(rx) == HEAD + data


def test_send_many_rejects_bad_arguments(core, ring):
    for bad in (object(), None):
        with pytest.raises(TypeError):
            core.send_many(ring, [bad], 10)
    with pytest.raises(ValueError):
        core.send_many(ring, [], -1)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_writes_and_budgets_deliver_exact_bytes(core, ring, socket_pair, seed):
    rng = random.Random(seed)
    tx, rx = socket_pair()
    lis = make_listener(core, tx, prefix=HEAD)
    written, received = bytearray(), bytearray()
    while len(written) < 3 * SMALL_CAPACITY:         # wraps around several times
        chunk = rng.randbytes(rng.randint(1, 40000))
        ring.write(chunk)
        written += chunk
        while lis.pos < ring.write_seq:
            for _, status, _ in core.send_many(ring, [lis], rng.randint(1, 70000)):
                assert status == core.WOULD_BLOCK
            received += drain(rx)
    received += drain(rx)
    assert received == HEAD + written
    assert (lis.audio_sent, lis.sent) == (len(written), len(received))


# -- ICY interleave -------------------------------------------------------------------

def test_first_icy_block_is_the_full_current_metadata_then_nul(core, ring, socket_pair):
    tx, rx = socket_pair()
    ring.write(b"abcdefgh")
    lis = make_listener(core, tx, metaint=4)
    assert core.send_many(ring, [lis], 100) == []
    assert drain(rx) == b"abcd" + core.INITIAL_METADATA + b"efgh" + b"\0"
    assert (lis.meta_gen, lis.meta_left, lis.audio_sent) == (2, 4, 8)
    assert lis.sent == 8 + len(core.INITIAL_METADATA) + 1


def test_new_metadata_is_sent_once_at_the_next_boundary(core, ring, socket_pair):
    tx, rx = socket_pair()
    lis = make_listener(core, tx, metaint=4)
    ring.write(b"abcdef")
    assert core.send_many(ring, [lis], 100) == []
    song = icy_block("Artist - Song")
    ring.set_metadata(song)
    ring.write(b"ghijklmnop")
    assert core.send_many(ring, [lis], 100) == []
    assert drain(rx) == (b"abcd" + core.INITIAL_METADATA + b"efgh" + song + b"ijkl" + b"\0"
                         + b"mnop" + b"\0")
    assert lis.meta_gen == 4


@pytest.mark.parametrize(("metaint", "total", "seed"), [
    (16, 20_000, 1), (1000, 200_000, 2), (8192, 700_000, 3), (8192, 700_000, 4),
])
def test_icy_interleave_matches_reference_with_metadata_changes(core, ring, socket_pair,
                                                                metaint, total, seed):
    rng = random.Random(seed)
    tx, rx = socket_pair()
    lis = make_listener(core, tx, metaint=metaint, prefix=HEAD)
    # At most ~12 boundaries per pass keeps a pass within the 32-iovec limit, so every
    # pass sends exactly min(available, budget) ring bytes and the oracle can follow.
    max_budget = min(12 * metaint, 32768)
    passes: list[Pass] = []
    written, received = bytearray(), bytearray()
    songs = 0

    def maybe_change_metadata(probability: float) -> None:
        nonlocal songs
        if rng.random() < probability:
            songs += 1
            ring.set_metadata(icy_block(f"song {songs} " + "la" * rng.randint(0, 300)))

    while len(written) < total:
        maybe_change_metadata(0.3)
        chunk = rng.randbytes(rng.randint(1, min(40000, 3 * metaint)))
        ring.write(chunk)
        written += chunk
        while lis.pos < ring.write_seq:
            maybe_change_metadata(0.2)
            budget = rng.randint(1, max_budget)
            expected_audio = bytes(written[lis.pos:lis.pos + budget])
            current = ring.metadata()
            assert core.send_many(ring, [lis], budget) == []
            passes.append((expected_audio, current))
            received += drain(rx)
    assert songs > 3
    assert received == expected_icy_stream(HEAD, passes, metaint)
    assert lis.sent == len(received)


def test_many_icy_blocks_per_pass_respect_the_iovec_limit(core, ring, socket_pair):
    tx, rx = socket_pair()
    song = icy_block("tiny metaint")
    ring.set_metadata(song)
    meta = ring.metadata()
    data = random.Random(6).randbytes(5000)
    ring.write(data)
    lis = make_listener(core, tx, metaint=1)
    passes: list[Pass] = []
    received = bytearray()
    while lis.pos < len(data):
        before = lis.pos
        assert core.send_many(ring, [lis], 10**6) == []
        assert 0 < lis.pos - before <= 16             # 32 iovecs: byte, block, byte, ...
        passes.append((data[before:lis.pos], meta))
        received += drain(rx)
    assert len(passes) >= len(data) // 16
    assert received == expected_icy_stream(b"", passes, 1)


# -- partial sends and statuses -------------------------------------------------------

def test_would_block_when_the_socket_is_full(core, ring, socket_pair):
    tx, rx = socket_pair(sndbuf=4096)
    fill_socket(tx)
    ring.write(b"x" * 100)
    lis = make_listener(core, tx, prefix=HEAD)
    assert core.send_many(ring, [lis], 1000) == [(lis, core.WOULD_BLOCK, errno.EAGAIN)]
    assert (lis.sent, lis.pos, lis.prefix_left) == (0, 0, len(HEAD))
    backlog = drain(rx)
    assert core.send_many(ring, [lis], 1000) == []
    assert backlog + drain(rx) == bytes(len(backlog)) + HEAD + b"x" * 100


def test_partial_send_is_accounted_and_reported_as_would_block(core, ring, socket_pair):
    tx, rx = socket_pair(sndbuf=4096)
    data = random.Random(7).randbytes(100_000)
    ring.write(data)
    lis = make_listener(core, tx)
    assert core.send_many(ring, [lis], 100_000) == [(lis, core.WOULD_BLOCK, errno.EAGAIN)]
    assert 0 < lis.sent == lis.pos == lis.audio_sent < 100_000
    assert drain(rx) == data[:lis.pos]


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_partial_sends_resume_exactly(core, ring, socket_pair, seed):
    rng = random.Random(seed)
    tx, rx = socket_pair(sndbuf=4096)
    metaint, total = 700, 200_000
    lis = make_listener(core, tx, metaint=metaint, prefix=HEAD)
    gen_of = {core.INITIAL_METADATA: 2}
    written, received = bytearray(), bytearray()
    sent_after_pass: list[tuple[int, bool]] = []    # (lis.sent, metadata changed right after)
    would_block = 0
    for _ in range(100_000):
        if len(written) < total and ring.write_seq - lis.pos < 20_000:
            chunk = rng.randbytes(min(rng.randint(1, 8000), total - len(written)))
            ring.write(chunk)
            written += chunk
        problems = core.send_many(ring, [lis], rng.randint(1, 30_000))
        assert problems in ([], [(lis, core.WOULD_BLOCK, errno.EAGAIN)])
        would_block += len(problems)
        changed = rng.random() < 0.5
        if changed:            # long blocks, so that partial sends often cut one
            block = icy_block(f"{len(gen_of)} " + "x" * rng.randint(2000, 4000))
            ring.set_metadata(block)
            gen_of[block] = ring.metadata()[0]
        sent_after_pass.append((lis.sent, changed))
        received += drain(rx, rng.randint(0, 6000))
        if len(written) == total and lis.pos == total and not problems \
                and lis.sent == len(received):
            break
    else:
        pytest.fail("listener never caught up")

    assert would_block > 0 and lis.audio_sent == total
    assert received.startswith(HEAD)
    audio, blocks = parse_icy_stream(bytes(received[len(HEAD):]), metaint)
    assert audio == written
    gens = [gen_of[bytes(received[len(HEAD) + a:len(HEAD) + b])] for a, b in blocks]
    assert gens == sorted(set(gens))                 # whole blocks, each generation once
    cut_then_changed = sum(
        1 for sent, changed in sent_after_pass
        if changed and any(len(HEAD) + a < sent < len(HEAD) + b for a, b in blocks))
    assert cut_then_changed > 0                      # the rest of the old block went first


def test_listener_behind_lag_limit_is_lapped_and_gets_nothing(core, ring, socket_pair):
    tx, rx = socket_pair()
    ring.write(bytes(10_000))
    lis = make_listener(core, tx, lag_limit=5000, prefix=HEAD)
    assert core.send_many(ring, [lis], 100_000) == [(lis, core.LAPPED, 0)]
    assert drain(rx) == b"" and (lis.pos, lis.sent) == (0, 0)


def test_listener_overtaken_by_the_writer_is_lapped_even_with_huge_lag_limit(core, ring,
                                                                            socket_pair):
    tx, rx = socket_pair()
    ring.write(bytes(SMALL_CAPACITY - GUARD + 1))
    lis = make_listener(core, tx, lag_limit=10**12)
    assert core.send_many(ring, [lis], 10**6) == [(lis, core.LAPPED, 0)]
    assert drain(rx) == b""


def test_closed_peer_is_an_error_and_the_fd_stays_open(core, ring, socket_pair):
    tx, rx = socket_pair()
    rx.close()
    ring.write(b"abc")
    lis = make_listener(core, tx)
    [(who, status, err)] = core.send_many(ring, [lis], 100)
    assert (who, status) == (lis, core.ERROR)
    assert err in (errno.EPIPE, errno.ECONNRESET)
    fcntl.fcntl(tx.fileno(), fcntl.F_GETFL)          # still open: the caller closes it


def test_one_bad_listener_does_not_affect_the_others(core, ring, socket_pair):
    data = random.Random(8).randbytes(3000)
    ring.write(data)
    (tx1, rx1), (tx2, rx2), (tx3, rx3), (tx4, rx4) = (socket_pair() for _ in range(4))
    rx2.close()
    good1 = make_listener(core, tx1)
    dead = make_listener(core, tx2)
    lapped = make_listener(core, tx3, lag_limit=10)
    good2 = make_listener(core, tx4, metaint=1000, prefix=HEAD)
    problems = core.send_many(ring, [good1, dead, lapped, good2], 10_000)
    assert [(who, status) for who, status, _ in problems] == [(dead, core.ERROR),
                                                               (lapped, core.LAPPED)]
    assert drain(rx1) == data
    assert drain(rx3) == b""
    assert drain(rx4) == expected_icy_stream(HEAD, [(data, ring.metadata())], 1000)
