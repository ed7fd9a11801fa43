"""FeedPoll, a process's one waiting point for its feeds' sockets (issue 13): the compiled
one (fanout._ingest) and its twin (fanout.ingestref) follow the same rules.

Real sockets (socketpairs, and a TCP pair for a reset). A steady stream is read into the
ring without its owner being named; the owner is named once per cause (closed, failed,
events queued, pace limit, idle) and only when something is new.
"""
from __future__ import annotations

import errno
import importlib
import select
import socket
import struct
from collections.abc import Iterator
from types import ModuleType

import pytest

from fanout.protocol.icy import encode_block, stream_title_text
from tests.support.waiting import wait_for

from .conftest import SMALL_CAPACITY

IMPLEMENTATIONS = {"compiled": ("fanout._ingest", "fanout._core"),
                   "python": ("fanout.ingestref", "fanout.coreref")}
METAINT = 1000


class Rig:
    """A FeedPoll of one implementation, with the rings and sockets it made."""

    def __init__(self, ingest_mod: ModuleType, ring_mod: ModuleType) -> None:
        self.mod, self.ring_mod = ingest_mod, ring_mod
        self.poll = ingest_mod.FeedPoll()
        self.closers: list = [self.poll]

    def member(self, **options: object) -> tuple[socket.socket, socket.socket, object, object]:
        """(tx, rx, ring, ingest): rx (non-blocking) is in the poll, reading into ring."""
        tx, rx = socket.socketpair()
        rx.setblocking(False)
        ring = self.ring_mod.Ring.create(SMALL_CAPACITY, 0)
        ingest = self.mod.Ingest(ring, "generic", icy_metaint=options.pop("metaint", 0))
        self.poll.add(rx.fileno(), ingest, **options)
        self.closers.extend((ingest, ring, tx, rx))
        return tx, rx, ring, ingest

    def ready(self) -> list[int]:
        """service(), once the epoll fd says a member is readable."""
        select.select([self.poll.fileno()], [], [], 5.0)
        return self.poll.service()

    def close(self) -> None:
        for thing in self.closers:
            thing.close()


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def rig(request: pytest.FixtureRequest) -> Iterator[Rig]:
    ingest_name, ring_name = IMPLEMENTATIONS[request.param]
    rig = Rig(importlib.import_module(ingest_name), importlib.import_module(ring_name))
    yield rig
    rig.close()


def test_a_steady_stream_goes_into_the_ring_without_naming_its_owner(rig):
    tx, rx, ring, _ = rig.member()
    sent = bytes(range(256)) * 40
    for start in range(0, len(sent), 1000):
        tx.sendall(sent[start:start + 1000])
        assert rig.ready() == []
    assert rig.poll.take(rx.fileno()) == (len(sent), 0, 0)
    assert ring.write_seq == len(sent)
    assert ring.read(0, len(sent)) == sent
    assert rig.poll.take(rx.fileno()) == (0, 0, 0)


def test_only_the_member_with_news_is_named(rig):
    quiet_tx, quiet_rx, _, _ = rig.member()
    closing_tx, closing_rx, _, _ = rig.member()
    quiet_tx.sendall(b"x" * 100)
    closing_tx.sendall(b"y" * 50)
    closing_tx.close()
    named = wait_for(lambda: rig.ready(), 5.0, "the closed member named")
    assert named == [closing_rx.fileno()]
    assert rig.poll.take(closing_rx.fileno()) == (50, rig.mod.FEED_EOF, 0)
    assert rig.poll.take(quiet_rx.fileno()) == (100, 0, 0)


def test_a_closed_peer_is_named_once_and_leaves_the_set(rig):
    tx, rx, _, _ = rig.member()
    tx.close()
    assert rig.ready() == [rx.fileno()]
    # Level-triggered epoll would report the closed socket for ever: it is out of the set.
    assert rig.poll.service() == []
    assert rig.poll.take(rx.fileno()) == (0, rig.mod.FEED_EOF, 0)


def test_a_reset_is_named_with_its_errno(rig):
    server = socket.create_server(("127.0.0.1", 0))
    tx = socket.create_connection(server.getsockname())
    rx, _ = server.accept()
    server.close()
    rx.setblocking(False)
    ring = rig.ring_mod.Ring.create(SMALL_CAPACITY, 0)
    ingest = rig.mod.Ingest(ring, "generic")
    rig.poll.add(rx.fileno(), ingest)
    rig.closers.extend((ingest, ring, rx))
    tx.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    tx.close()  # an RST
    assert rig.ready() == [rx.fileno()]
    count, flags, err = rig.poll.take(rx.fileno())
    assert (count, flags) == (0, rig.mod.FEED_ERROR)
    assert err == errno.ECONNRESET


def test_queued_events_name_the_owner(rig):
    tx, rx, _, ingest = rig.member(metaint=METAINT)
    block = encode_block(stream_title_text(song=b"Hello"))
    tx.sendall(b"a" * METAINT + block + b"b" * 10)
    named = wait_for(lambda: rig.ready(), 5.0, "the title's owner named")
    assert named == [rx.fileno()]
    count, flags, _ = rig.poll.take(rx.fileno())
    assert flags == rig.mod.FEED_EVENTS
    assert count == METAINT + len(block) + 10  # bytes read, blocks included
    assert ingest.take_events() == [(rig.mod.EVENT_TITLE, block[1:])]


def test_a_paced_member_is_not_read_until_rearmed(rig):
    tx, rx, ring, _ = rig.member(pace_bytes=1000, pace_window=3600.0)
    tx.sendall(b"p" * 1500)
    named = wait_for(lambda: rig.ready(), 5.0, "the paced member named")
    assert named == [rx.fileno()]
    count, flags, _ = rig.poll.take(rx.fileno())
    assert flags == rig.mod.FEED_PACED and count >= 1000
    tx.sendall(b"q" * 500)
    select.select([rx], [], [], 5.0)
    assert rig.poll.service() == []
    assert ring.write_seq == count  # what came after the limit waits in the socket
    rig.poll.rearm(rx.fileno())
    assert rig.ready() == []
    assert ring.write_seq == 2000


def test_idle_is_flagged_by_the_sweep_only_after_the_timeout(rig):
    tx, rx, _, _ = rig.member(idle=0.2)
    assert rig.poll.sweep() == []  # just added: not silent for 0.2 s yet
    named = wait_for(lambda: rig.poll.sweep(), 5.0, "the idle member named")
    assert named == [rx.fileno()]
    assert rig.poll.take(rx.fileno()) == (0, rig.mod.FEED_IDLE, 0)
    assert rig.poll.silent(rx.fileno()) >= 0.2


def test_bytes_waiting_at_the_sweep_are_read_first_and_not_idle(rig):
    # A process stopped for longer than the timeout finds its source's bytes waiting:
    # the sweep reads them before judging, so the source is not dropped.
    tx, rx, _, _ = rig.member(idle=0.2)
    wait_for(lambda: rig.poll.silent(rx.fileno()) >= 0.3, 5.0, "silent past the timeout")
    tx.sendall(b"z" * 300)
    select.select([rx], [], [], 5.0)
    assert rig.poll.sweep() == []
    assert rig.poll.take(rx.fileno()) == (300, 0, 0)


def test_a_member_is_added_once_and_removed_idempotently(rig):
    tx, rx, ring, ingest = rig.member()
    with pytest.raises(ValueError):
        rig.poll.add(rx.fileno(), ingest)
    assert len(rig.poll) == 1
    rig.poll.remove(rx.fileno())
    rig.poll.remove(rx.fileno())
    assert len(rig.poll) == 0
    tx.sendall(b"gone")
    select.select([rx], [], [], 5.0)
    assert rig.poll.service() == []
    assert ring.write_seq == 0
