"""The guard rule under a real concurrent writer: another process writes a known pattern
while this one reads and sends. Whatever is not reported lapped must be exactly the pattern
(never a torn byte).

No timing is assumed: the reader publishes a tick per iteration (listener slot 1) and the
writer never runs more than STEP bytes per tick ahead, so it races every read and send but
cannot lap every one of them however the scheduler treats the two processes."""
from __future__ import annotations

import random
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
