"""The other processes of the wake-up tests (tests/core/test_wakeup.py): a ring writer and
a waiting worker, each on its own implementation of the core.

    python -m tests.core.wake_child MODULE ROLE TABLE_FD EVENTFDS RING_FD [SLOT]

MODULE is fanout._core or fanout.coreref; EVENTFDS a comma-separated list (slot order).
Roles:
- writer / ingest-writer: one command per stdin line, one answer per stdout line:
  "write N CHUNK" writes N bytes, CHUNK at a time (through Ring.write, or through the
  implementation's Ingest in "generic" format), answers "done <write_seq>".
- reader: worker SLOT's Waiter, watching the ring (tag "ring") from its write_seq on
  (says "watching <seq>" first): "arm" -> "due <tags>"; "wait" -> waits on the eventfd
  (poll), then disarms: "woken <drained count> <tags due>" (or "timeout" after WAIT_LIMIT
  s); "disarm" -> "drained <n>"; "pass" -> records a pass at the current write_seq,
  "passed <seq>"; "unwatch" -> "ok".
- race-writer: writes small chunks until the ring's flags have STOP, but goes no further
  once its write_seq reached the limit its reader set (as the ring's listener count).
- race-reader / race-reader-gevent: CYCLES cycles of: let the writer go to a pseudo-random
  limit between half a wake batch and one and a half past the last pass, spin until it is
  within a chunk of it, arm (so that, about every other cycle, the writer crosses a wake
  batch while the reader arms), and if nothing is due let the writer go a wake batch past
  the current write_seq and wait on the eventfd (select.poll, or gevent's wait_read).
  Prints "sleeps <n> rechecks <n>" and exits 0, or exits LOST if a wait outlived
  WAIT_LIMIT: a lost wake-up, since the writer then advances a wake batch past whatever
  the re-check saw (or STUCK if the writer stopped writing).
"""
from __future__ import annotations

import importlib
import os
import select
import sys
import time
from typing import Any

WAIT_LIMIT = 30.0              # s: far beyond any wake-up; only a lost one reaches it
STOP = 0x100                   # a ring flags bit the tests use to stop the race writer
CYCLES = 300                   # arm/wait cycles of each race reader
MAX_CHUNK = 700                # race writer's largest write
LOST = 3                       # race reader's exit status for a lost wake-up
STUCK = 4                      # race reader's exit status when its writer stopped
PATTERN = bytes(range(256)) * 256


def main() -> int:
    module, role, table_fd, eventfds, ring_fd, *rest = sys.argv[1:]
    core = importlib.import_module(module)
    bells = core.Doorbells.attach(int(table_fd), [int(fd) for fd in eventfds.split(",")])
    ring = core.Ring.attach(int(ring_fd), doorbells=bells)
    slot = int(rest[0]) if rest else 0
    if role in ("writer", "ingest-writer"):
        return serve_writes(core, ring, role == "ingest-writer")
    if role == "reader":
        return serve_waits(core, bells, ring, slot)
    if role == "race-writer":
        return race_writer(ring)
    if role in ("race-reader", "race-reader-gevent"):
        return race_reader(core, bells, ring, slot, role.endswith("gevent"))
    raise SystemExit(f"unknown role {role}")


def answer(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def serve_writes(core: Any, ring: Any, through_ingest: bool) -> int:
    ingest = None
    if through_ingest:
        ingest_module = "fanout._ingest" if core.__name__ == "fanout._core" else "fanout.ingestref"
        ingest = importlib.import_module(ingest_module).Ingest(ring, "generic")
    for line in sys.stdin:
        _, total, chunk = line.split()
        left = int(total)
        while left:
            piece = PATTERN[:min(left, int(chunk))]
            if ingest is not None:
                ingest.feed(piece)
            else:
                ring.write(piece)
            left -= len(piece)
        answer(f"done {ring.write_seq}")
    return 0


def wait_readable(fd: int, timeout: float) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def serve_waits(core: Any, bells: Any, ring: Any, slot: int) -> int:
    waiter = core.Waiter(bells, slot)
    seq = ring.write_seq
    waiter.watch(ring, "ring", seq)
    answer(f"watching {seq}")
    for line in sys.stdin:
        command = line.strip()
        if command == "arm":
            answer(f"due {','.join(waiter.arm())}")
        elif command == "wait":
            if not wait_readable(waiter.fd, WAIT_LIMIT):
                answer("timeout")
                continue
            drained = waiter.disarm()
            answer(f"woken {drained} {','.join(waiter.due())}")
        elif command == "disarm":
            answer(f"drained {waiter.disarm()}")
        elif command == "pass":
            seq = ring.write_seq
            waiter.passed(ring, seq)
            answer(f"passed {seq}")
        elif command == "unwatch":
            waiter.unwatch(ring)
            answer("ok")
    return 0


def race_writer(ring: Any) -> int:
    seq, n = ring.write_seq, 0
    while not ring.flags & STOP:
        if seq >= ring.listener_count():
            os.sched_yield()
            continue
        n += 1
        size = 1 + (n * 7919) % MAX_CHUNK
        ring.write(PATTERN[:size])
        seq += size
    return 0


def race_reader(core: Any, bells: Any, ring: Any, slot: int, use_gevent: bool) -> int:
    if use_gevent:
        from gevent.socket import wait_read

        def readable(fd: int) -> bool:
            try:
                wait_read(fd, timeout=WAIT_LIMIT)
            except OSError:            # socket.timeout
                return False
            return True
    else:
        def readable(fd: int) -> bool:
            return wait_readable(fd, WAIT_LIMIT)
    waiter = core.Waiter(bells, slot)
    passed = ring.write_seq
    waiter.watch(ring, "ring", passed)
    batch = ring.wake_batch
    sleeps = rechecks = 0
    for cycle in range(CYCLES):
        limit = passed + batch // 2 + (cycle * 7919) % batch
        ring.set_listener_count(slot, limit)
        if not writer_reaches(ring, limit - MAX_CHUNK):
            return STUCK
        if waiter.arm():
            rechecks += 1
        else:
            ring.set_listener_count(slot, ring.write_seq + batch)
            if not readable(waiter.fd):
                return LOST
            waiter.disarm()
            sleeps += 1
        passed = ring.write_seq
        waiter.passed(ring, passed)
    answer(f"sleeps {sleeps} rechecks {rechecks}")
    return 0


def writer_reaches(ring: Any, seq: int) -> bool:
    """Spin until the ring's write_seq is at `seq` (False after WAIT_LIMIT s)."""
    deadline = time.monotonic() + WAIT_LIMIT
    while ring.write_seq < seq:
        if time.monotonic() > deadline:
            return False
        os.sched_yield()
    return True


if __name__ == "__main__":
    sys.exit(main())
