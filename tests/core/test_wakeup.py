"""Event-driven wake-ups: the doorbells a ring writer rings and the Waiter a worker waits
on (fanout._core's theory of operation, "Wake-ups").

The cross-process tests run the writer and the waiting workers as real processes
(tests/core/wake_child.py), each on either implementation, so they also prove the two
interoperate on one table and one ring. The eventfd writes are counted by the primitive
itself (Doorbells.rang), which is how "no syscall" is asserted.
"""
from __future__ import annotations

import importlib
import os
import select
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

from tests.support.waiting import wait_for

from . import wake_child
from .conftest import IMPLEMENTATIONS, SMALL_CAPACITY

ROOT = Path(__file__).resolve().parents[2]
BATCH = 8192
RACE_BATCH = 1024              # small: more doorbell checks to race in the same bytes
OFF_WAKE_SEQ, OFF_WAKE_BATCH, OFF_READERS = 3152, 3160, 3200
PAIRS = [(w, r) for w in sorted(IMPLEMENTATIONS) for r in sorted(IMPLEMENTATIONS)]
ANSWER_TIMEOUT = 60.0          # s a child may take to answer (it never waits that long)


def load(name: str) -> ModuleType:
    return importlib.import_module(IMPLEMENTATIONS[name])


def raw_u64(fd: int, offset: int) -> int:
    return struct.unpack("<Q", os.pread(fd, 8, offset))[0]


class Child:
    """A wake_child process; ask() sends one command line and returns its answer."""

    def __init__(self, impl: str, role: str, bells, ring, slot: int = 0) -> None:
        fds = [bells.table_fd, ring.fd, *bells.eventfds]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.core.wake_child", IMPLEMENTATIONS[impl], role,
             str(bells.table_fd), ",".join(map(str, bells.eventfds)), str(ring.fd), str(slot)],
            cwd=ROOT, pass_fds=fds, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            env={"PYTHONPATH": str(ROOT)}, text=True)
        if role == "reader":       # its ring is watched once it says so
            assert self.answer().startswith("watching ")

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.answer()

    def answer(self) -> str:
        """The child's next line (it answers every command; a race reader, once)."""
        stdout = self.proc.stdout
        assert stdout is not None
        # select blocks until the line is there (up to a second per look), so an answer
        # is read as soon as it is written.
        wait_for(lambda: select.select([stdout], [], [], 1.0)[0], ANSWER_TIMEOUT,
                 "a child's answer")
        line = stdout.readline().strip()
        assert line, f"child exited with {self.proc.poll()}"
        return line

    def close(self) -> int:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            return self.proc.wait(timeout=ANSWER_TIMEOUT)
        finally:
            if self.proc.stdout is not None:
                self.proc.stdout.close()


@pytest.fixture
def made() -> Iterator[Callable[..., tuple]]:
    """made(impl, slots=2) -> (doorbells, ring) as the supervisor makes them, on `impl`;
    closed after the test."""
    objects: list = []

    def make(impl: str, slots: int = 2):
        core = load(impl)
        bells = core.Doorbells.create(slots)
        ring = core.Ring.create(SMALL_CAPACITY, core.FORMAT_GENERIC)
        objects.extend((ring, bells))
        return bells, ring

    yield make
    for obj in objects:
        obj.close()


@pytest.fixture
def spawn() -> Iterator[Callable[..., Child]]:
    """spawn(impl, role, doorbells, ring, slot=0) -> a Child, which must exit cleanly."""
    children: list[Child] = []

    def start(*args, **kwargs) -> Child:
        child = Child(*args, **kwargs)
        children.append(child)
        return child

    yield start
    for child in children:
        assert child.close() == 0


def done_seq(answer: str) -> int:
    word, seq = answer.split()
    assert word == "done"
    return int(seq)


# -- across processes: writer and waiting workers on either implementation ---------------

@pytest.mark.parametrize("role", ["writer", "ingest-writer"])
@pytest.mark.parametrize(("writer_impl", "reader_impl"), PAIRS)
def test_armed_reader_is_rung_once_when_the_ring_advanced_a_wake_batch(
        made, spawn, writer_impl, reader_impl, role):
    bells, ring = made(writer_impl)
    reader = spawn(reader_impl, "reader", bells, ring, 1)
    writer = spawn(writer_impl, role, bells, ring)
    for round_ in range(3):
        assert reader.ask("arm") == "due"
        assert bells.armed(1)
        done_seq(writer.ask(f"write {BATCH - 1} 1000"))       # one byte short
        assert bells.rang(1) == round_                          # no eventfd write yet
        assert reader.ask("pass") == f"passed {(round_ + 1) * BATCH - 1}"
        done_seq(writer.ask("write 1 1"))
        assert bells.rang(1) == round_ + 1
        assert reader.ask("wait") == "woken 1"                 # rung once; its pass is recent
        assert not bells.armed(1)
        # the one byte is pending, not a batch: due(1) would list it, due() does not
        assert reader.ask("pass") == f"passed {(round_ + 1) * BATCH}"
    assert bells.rang(0) == 0                                   # slot 0 never read this ring


@pytest.mark.parametrize(("writer_impl", "reader_impl"), PAIRS)
def test_reader_that_armed_and_rechecked_is_woken_by_the_next_wake_batch(
        made, spawn, writer_impl, reader_impl):
    bells, ring = made(writer_impl)
    reader = spawn(reader_impl, "reader", bells, ring, 0)
    writer = spawn(writer_impl, "writer", bells, ring)
    assert reader.ask("arm") == "due"
    # The reader now waits in poll(2); the writer advances a batch in odd pieces.
    reader.proc.stdin.write("wait\n")
    reader.proc.stdin.flush()
    assert done_seq(writer.ask(f"write {BATCH} 333")) == BATCH
    assert reader.answer() == "woken 1 ring"
    assert bells.rang(0) == 1


@pytest.mark.parametrize(("writer_impl", "reader_impl"), PAIRS)
def test_advance_before_arming_is_found_by_the_recheck_without_a_syscall(
        made, spawn, writer_impl, reader_impl):
    bells, ring = made(writer_impl)
    reader = spawn(reader_impl, "reader", bells, ring, 0)
    writer = spawn(writer_impl, "writer", bells, ring)
    done_seq(writer.ask(f"write {3 * BATCH} 4096"))              # nobody armed
    assert bells.rang(0) == 0
    assert reader.ask("arm") == "due ring"                      # re-check: serve, don't wait
    assert not bells.armed(0)
    assert reader.ask("disarm") == "drained 0"


@pytest.mark.parametrize(("writer_impl", "reader_impl"), PAIRS)
def test_no_eventfd_write_while_no_reader_of_the_ring_is_armed(
        made, spawn, writer_impl, reader_impl):
    bells, ring = made(writer_impl)
    watching = spawn(reader_impl, "reader", bells, ring, 0)    # reads the ring, never armed
    elsewhere = spawn(reader_impl, "reader", bells, ring, 1)   # armed, reads another ring
    assert elsewhere.ask("unwatch") == "ok"
    assert elsewhere.ask("arm") == "due"
    writer = spawn(writer_impl, "writer", bells, ring)
    done_seq(writer.ask(f"write {50 * BATCH} 1500"))
    assert (bells.rang(0), bells.rang(1)) == (0, 0)
    assert ring.readers() == [0]
    assert watching.ask("disarm") == "drained 0"
    assert elsewhere.ask("disarm") == "drained 0"


@pytest.mark.parametrize(("writer_impl", "reader_impl"), PAIRS)
def test_writer_rings_an_armed_reader_at_most_once_per_wake_batch(
        made, spawn, writer_impl, reader_impl):
    bells, ring = made(writer_impl)
    reader = spawn(reader_impl, "reader", bells, ring, 0)
    writer = spawn(writer_impl, "writer", bells, ring)
    assert reader.ask("arm") == "due"
    done_seq(writer.ask(f"write {40 * BATCH + 100} 1024"))     # the reader does not drain
    assert bells.rang(0) == 40
    assert reader.ask("disarm") == "drained 40"


@pytest.mark.parametrize(("writer_impl", "reader_impl"), PAIRS)
def test_no_lost_wake_up_against_a_racing_writer(made, writer_impl, reader_impl):
    """Two workers arm, re-check and wait CYCLES times each, each on a ring whose writer
    races its arming; a lost wake-up leaves a reader waiting, as its writer is held back
    until it ticks again."""
    core = load(writer_impl)
    bells, first = made(writer_impl)
    second = core.Ring.create(SMALL_CAPACITY, core.FORMAT_GENERIC)
    rings = [first, second]
    for ring in rings:
        ring.set_wake_batch(RACE_BATCH)
    readers = [Child(reader_impl, role, bells, ring, slot) for slot, (role, ring)
               in enumerate(zip(("race-reader-gevent", "race-reader"), rings))]
    writers = [Child(writer_impl, "race-writer", bells, ring) for ring in rings]
    try:
        results = [reader.answer() for reader in readers]
        assert [reader.close() for reader in readers] == [0, 0]
    finally:
        for ring in rings:
            ring.set_flags(wake_child.STOP)
        for reader in readers:
            reader.proc.kill()
        assert [writer.close() for writer in writers] == [0, 0]
        second.close()
    for slot, result in enumerate(results):
        word, sleeps, _, rechecks = result.split()
        assert word == "sleeps" and int(sleeps) + int(rechecks) == wake_child.CYCLES
        assert int(sleeps) > 0, "the reader never had to wait: the race was not run"
        assert int(rechecks) > 0, "arm() never found the ring due: the writer never raced it"
        assert bells.rang(slot) >= int(sleeps)


# -- in one process: the API ---------------------------------------------------------------

@pytest.fixture
def wake(core: ModuleType) -> Iterator[tuple]:
    """(doorbells with 2 slots, a ring that rings them, Waiter of slot 0)."""
    bells = core.Doorbells.create(2)
    ring = core.Ring.create(SMALL_CAPACITY, core.FORMAT_GENERIC, doorbells=bells)
    yield bells, ring, core.Waiter(bells, 0)
    ring.close()
    bells.close()


def test_a_new_ring_has_the_default_wake_batch_and_no_readers(core, wake):
    _, ring, _ = wake
    assert ring.wake_batch == core.WAKE_BATCH == raw_u64(ring.fd, OFF_WAKE_BATCH) == BATCH
    assert ring.readers() == [] and raw_u64(ring.fd, OFF_WAKE_SEQ) == 0


def test_watch_marks_the_worker_as_a_reader_of_the_ring_and_unwatch_clears_it(wake):
    _, ring, waiter = wake
    waiter.watch(ring, "a", 0)
    assert ring.readers() == [0] and raw_u64(ring.fd, OFF_READERS) == 1
    waiter.watch(ring, "b", 0)                         # again: updates, no second entry
    assert len(waiter) == 1
    ring.write(bytes(BATCH))
    assert waiter.due() == ["b"]
    waiter.unwatch(ring)
    waiter.unwatch(ring)
    assert ring.readers() == [] and len(waiter) == 0 and waiter.due() == []


def test_due_compares_each_ring_with_its_last_pass(core, wake):
    bells, ring, waiter = wake
    other = core.Ring.create(SMALL_CAPACITY, core.FORMAT_GENERIC, doorbells=bells)
    try:
        other.set_wake_batch(100)
        waiter.watch(ring, "ring", 0)
        waiter.watch(other, "other", 0)
        ring.write(bytes(BATCH - 1))
        other.write(bytes(100))
        assert waiter.due() == ["other"]
        assert sorted(waiter.due(1)) == ["other", "ring"]
        waiter.passed(other, 100)
        assert waiter.due(1) == ["ring"] and waiter.due() == []
        other.close()
        assert waiter.due(1) == ["ring"]               # a closed ring is never due
        waiter.unwatch(other)
    finally:
        other.close()


def test_due_rejects_a_minimum_below_one_and_passed_an_unwatched_ring(wake):
    _, ring, waiter = wake
    with pytest.raises(ValueError):
        waiter.due(0)
    with pytest.raises(KeyError):
        waiter.passed(ring, 0)


def test_set_wake_batch_rejects_zero_and_changes_when_readers_are_rung(wake):
    bells, ring, waiter = wake
    with pytest.raises(ValueError):
        ring.set_wake_batch(0)
    ring.set_wake_batch(1000)
    waiter.watch(ring, "ring", 0)
    assert waiter.arm() == []
    ring.write(bytes(999))
    assert bells.rang(0) == 0
    ring.write(b"x")
    assert bells.rang(0) == 1 and waiter.disarm() == 1


def test_a_ring_without_doorbells_rings_nobody(core, wake):
    bells, _, waiter = wake
    plain = core.Ring.attach(wake[1].fd)
    try:
        assert plain.doorbells is None
        waiter.watch(wake[1], "ring", 0)
        assert waiter.arm() == []
        plain.write(bytes(4 * BATCH))
        assert bells.rang(0) == 0 and waiter.arm() == ["ring"]
    finally:
        plain.close()


def test_writes_after_the_doorbells_closed_ring_nobody(core):
    bells = core.Doorbells.create(1)
    ring = core.Ring.create(SMALL_CAPACITY, core.FORMAT_GENERIC, doorbells=bells)
    try:
        waiter = core.Waiter(bells, 0)
        waiter.watch(ring, "ring", 0)
        assert waiter.arm() == []
        bells.close()
        ring.write(bytes(4 * BATCH))
        assert ring.write_seq == 4 * BATCH
    finally:
        ring.close()


def test_waiter_starts_disarmed_with_its_eventfd_drained(core, wake):
    bells, ring, waiter = wake
    waiter.watch(ring, "ring", 0)
    assert waiter.arm() == []
    ring.write(bytes(BATCH))                           # then "the worker dies"
    assert bells.armed(0) and bells.rang(0) == 1
    successor = core.Waiter(bells, 0)
    assert not bells.armed(0)
    assert select.select([successor.fd], [], [], 0)[0] == []


def test_waiter_needs_a_slot_with_an_eventfd_here(core):
    bells = core.Doorbells.create(2)
    try:
        partial = core.Doorbells.attach(bells.table_fd, [bells.eventfds[0]])
        try:
            assert partial.eventfds[1] == -1
            with pytest.raises(ValueError):
                core.Waiter(partial, 1)
            with pytest.raises(ValueError):
                core.Waiter(partial, 2)
            partial.set_eventfd(1, bells.eventfds[1])
            assert core.Waiter(partial, 1).fd not in (-1, bells.eventfds[1])   # a dup
        finally:
            partial.close()
    finally:
        bells.close()


@pytest.mark.parametrize("slots", [0, 65])
def test_doorbells_need_one_to_max_workers_slots(core, slots):
    with pytest.raises(ValueError):
        core.Doorbells.create(slots)


def test_attach_rejects_what_is_not_a_doorbell_table(core, ring):
    with pytest.raises(ValueError):
        core.Doorbells.attach(ring.fd, [])


def test_closed_doorbells_refuse_use(core):
    bells = core.Doorbells.create(1)
    bells.close()
    bells.close()
    for use in (lambda: bells.table_fd, lambda: bells.armed(0), lambda: bells.rang(0)):
        with pytest.raises(ValueError):
            use()


@pytest.mark.parametrize(("maker", "user"), [("compiled", "python"), ("python", "compiled")])
def test_a_table_made_by_one_implementation_is_used_by_the_other(maker, user):
    table = load(maker).Doorbells.create(3)
    used = load(user).Doorbells.attach(table.table_fd, table.eventfds)
    ring = load(user).Ring.create(SMALL_CAPACITY, 0, doorbells=used)
    try:
        assert used.slots == 3
        waiter = load(maker).Waiter(table, 2)
        other_view = load(maker).Ring.attach(ring.fd)
        waiter.watch(other_view, "ring", 0)
        assert waiter.arm() == [] and used.armed(2)
        ring.write(bytes(BATCH))
        assert table.rang(2) == used.rang(2) == 1
        assert waiter.disarm() == 1 and not used.armed(2)
        other_view.close()
    finally:
        ring.close()
        used.close()
        table.close()


@pytest.mark.parametrize("impl", sorted(IMPLEMENTATIONS))
def test_ingest_reading_a_socket_rings_once_per_wake_batch(impl):
    core = load(impl)
    ingest = importlib.import_module({"compiled": "fanout._ingest",
                                      "python": "fanout.ingestref"}[impl])
    bells = core.Doorbells.create(1)
    ring = core.Ring.create(SMALL_CAPACITY, core.FORMAT_GENERIC, doorbells=bells)
    rx, tx = socket.socketpair()
    try:
        rx.setblocking(False)
        feeder = ingest.Ingest(ring, "generic")
        waiter = core.Waiter(bells, 0)
        waiter.watch(ring, "ring", 0)
        assert waiter.arm() == []
        for _ in range(5):
            tx.sendall(bytes(BATCH // 2))
            assert feeder.feed_fd(rx.fileno()) == BATCH // 2
        assert ring.write_seq == 5 * BATCH // 2 and bells.rang(0) == 2
        assert waiter.disarm() == 2 and waiter.due() == ["ring"]
    finally:
        rx.close()
        tx.close()
        ring.close()
        bells.close()


def test_compiled_ingest_refuses_the_twins_doorbells():
    bells = load("python").Doorbells.create(1)
    ring = load("python").Ring.create(SMALL_CAPACITY, 0, doorbells=bells)
    try:
        with pytest.raises(TypeError):
            importlib.import_module("fanout._ingest").Ingest(ring, "generic")
    finally:
        ring.close()
        bells.close()
