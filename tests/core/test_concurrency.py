"""The guard rule under a real concurrent writer: another process writes a known pattern
while this one reads and sends. Whatever is not reported lapped must be exactly the pattern
(never a torn byte).

No timing is assumed: the reader publishes a tick per iteration (listener slot 1) and the
writer never runs more than STEP bytes per tick ahead, so it races every read and send but
cannot lap every one of them however the scheduler treats the two processes."""
from __future__ import annotations

import random
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .conftest import IMPLEMENTATIONS

ROOT = Path(__file__).resolve().parents[2]
PERIOD = 251                      # prime, so pattern offsets drift across chunk sizes
PATTERN = bytes((i * 97 + 13) % 256 for i in range(PERIOD))
STOP = 0x100                      # a flags bit this test uses to stop the writer
CAPACITY = 4 * 65536
STEP = 32768                      # writer allowance per reader tick
ITERATIONS = 2000

WRITER = """
import os
import sys
from importlib import import_module
core = import_module(sys.argv[2])
ring = core.Ring.attach(int(sys.argv[1]))
pattern = bytes((i * 97 + 13) % 256 for i in range({period})) * 100
seq = ring.write_seq
while not ring.flags & {stop}:
    if seq >= {capacity} + ring.listener_count() * {step}:
        os.sched_yield()
        continue
    n = 1 + (seq * 7919) % 20000
    ring.write(pattern[seq % {period}:seq % {period} + n])
    seq += n
ring.close()
""".format(period=PERIOD, stop=STOP, capacity=CAPACITY, step=STEP)


def expected(seq: int, n: int) -> bytes:
    start = seq % PERIOD
    return (PATTERN * (2 + n // PERIOD))[start:start + n]


def recv_exactly(sock, n: int) -> bytes:
    chunks, left = [], n
    while left:
        data = sock.recv(left)
        assert data, "peer closed"
        chunks.append(data)
        left -= len(data)
    return b"".join(chunks)


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def writer_ring(request, core):
    """A ring of the reader's implementation, written by a child process of `param`'s."""
    ring = core.Ring.create(CAPACITY, core.FORMAT_GENERIC)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(ring.fd), IMPLEMENTATIONS[request.param]],
        cwd=ROOT, pass_fds=(ring.fd,), env={"PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        while ring.write_seq < CAPACITY and proc.poll() is None:  # the ring is full
            assert time.monotonic() < deadline, "writer never started"
        assert proc.poll() is None, "writer died"
        yield ring
    finally:
        ring.set_flags(STOP)
        assert proc.wait(timeout=30) == 0
        ring.close()


def racing_ticks(ring, done: Callable[[], bool]) -> Iterator[int]:
    """Publish reader ticks until there were ITERATIONS of them, the writer wrapped the ring
    a few times meanwhile and `done()` holds (a deadline guards against a dead writer)."""
    start = ring.write_seq
    deadline = time.monotonic() + 60
    tick = 0
    while tick < ITERATIONS or ring.write_seq < start + 4 * CAPACITY or not done():
        assert time.monotonic() < deadline, "the writer made no progress"
        tick += 1
        ring.set_listener_count(1, tick)
        yield tick


def test_reads_racing_a_writer_are_exact_or_lapped(core, writer_ring):
    rng = random.Random(41)
    good = 0
    for _ in racing_ticks(writer_ring, lambda: good > 0):
        seq = max(0, writer_ring.write_seq - rng.randint(0, CAPACITY))
        try:
            data = writer_ring.read(seq, rng.randint(1, 50_000))
        except core.LappedError:
            continue
        assert data == expected(seq, len(data))
        good += len(data) > 0
    assert good > 0


def test_sends_racing_a_writer_are_exact_unless_lapped(core, writer_ring, socket_pair):
    rng = random.Random(42)
    tx, rx = socket_pair()
    lis = core.Listener(tx.fileno(), writer_ring.write_seq, CAPACITY - 2 * core.GUARD)
    checked = 0
    for _ in racing_ticks(writer_ring, lambda: checked > 0):
        pos, sent = lis.pos, lis.sent
        problems = core.send_many(writer_ring, [lis], rng.randint(1, 60_000))
        data = recv_exactly(rx, lis.sent - sent)
        assert {status for _, status, _ in problems} <= {core.LAPPED, core.WOULD_BLOCK}
        if any(status == core.LAPPED for _, status, _ in problems):
            lis.pos = writer_ring.write_seq         # what a worker does: drop; here, rejoin
            continue
        assert data == expected(pos, len(data))
        checked += len(data)
    assert checked > 0


# -- a chained Ogg writer: a joiner's header pages belong to the link it starts in --------

CHAINER = """
import os
import struct
import sys
from importlib import import_module
core = import_module(sys.argv[2])
ring = core.Ring.attach(int(sys.argv[1]))
link = 0
while not ring.flags & {stop}:
    if ring.write_seq >= {capacity} + ring.listener_count() * {step}:
        os.sched_yield()
        continue
    link += 1
    start = ring.write_seq
    for piece in range(1 + link % 3):           # a link's first data, then more of it
        at = ring.write_seq
        ring.write(struct.pack("<QQ", link, at) * (1 + (link * 7 + piece) % 40))
        if piece == 0:
            ring.set_stream_header(struct.pack("<Q", link), start)
        ring.add_sync_point(at)
ring.close()
""".format(stop=STOP, capacity=CAPACITY, step=STEP)


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def chained_ring(request, core):
    """An Ogg ring of the reader's implementation, a new link every few records, written
    by a child process of `param`'s implementation."""
    ring = core.Ring.create(CAPACITY, core.FORMAT_OGG)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHAINER, str(ring.fd), IMPLEMENTATIONS[request.param]],
        cwd=ROOT, pass_fds=(ring.fd,), env={"PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        while ring.write_seq < CAPACITY and proc.poll() is None:
            assert time.monotonic() < deadline, "writer never started"
        assert proc.poll() is None, "writer died"
        yield ring
    finally:
        ring.set_flags(STOP)
        assert proc.wait(timeout=30) == 0
        ring.close()


def test_start_point_racing_a_chaining_writer_pairs_each_start_with_its_links_header(
        core, chained_ring):
    rng = random.Random(43)
    joined = 0
    for _ in racing_ticks(chained_ring, lambda: joined > 0):
        pos, header = chained_ring.start_point(rng.choice((0, 100, 5000, 10**9)))
        try:
            record = chained_ring.read(pos, 16)
        except core.LappedError:
            continue
        if len(record) < 16:                    # at write_seq: nothing written there yet
            continue
        link, at = struct.unpack("<QQ", record)
        assert at <= pos and (pos - at) % 16 == 0, "the start is not a record start"
        assert header == struct.pack("<Q", link), (
            f"a start in link {link} was given the header of link "
            f"{struct.unpack('<Q', header)[0]}")
        joined += 1
    assert joined > 0
