"""Relay pulls run in workers (issue 13): a dead worker's pulls move to the others, and a
worker added later takes its share, while listeners elsewhere keep a byte-exact stream.

The upstream is a real fanout master fed with self-identifying MP3 frames (the bench's:
a counter in every frame), so a listener's bytes are checked frame by frame: no gap, no
repeat, no torn byte. Its burst is large enough to hold what the slave missed while a
pull moved, so the new pull can splice the stream exactly (fanout/ringio.py `splice`).

A listener is placed on the worker that survives by stopping (SIGSTOP) the one that will
die while the listener connects: a stopped worker accepts nobody.
"""
from __future__ import annotations

import re
import socket
import threading
import time

import psutil
import pytest

from fanout.bench.payload import FRAME_SIZE, build_frames, parse_frame
from tests.support.clients import Listener, Source, read_head
from tests.support.server import FanoutProcess, exited, icecast_xml, start_fanout, worker_of
from tests.support.waiting import wait_for

# The master keeps this much behind its newest byte for a new listener (the slave's pull
# reconnecting): seconds of the feed below, far more than a move takes.
MASTER_BURST = 256 * 1024
MASTER_QUEUE = 1024 * 1024
# Frames per write and the pause between writes: ~50 KB/s.
FRAMES_PER_WRITE = 13
PAUSE = 0.1
# Stream bytes a listener must receive after a move for the check to cover it.
AFTER_MOVE = 64 * 1024
# Deadline (s) of each wait: generous, a loaded machine boots a worker slowly.
WAIT = 30


class FrameSource:
    """A source sending consecutive bench frames (counter from 0, stamp 0) until closed."""

    def __init__(self, server: FanoutProcess, mount: str) -> None:
        self.source = Source(server.host, server.port, mount, content_type="audio/mpeg")
        assert self.source.accepted, self.source.response
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        counter = 0
        try:
            while not self.stopping.is_set():
                self.source.send(build_frames(counter, FRAMES_PER_WRITE, 0))
                counter += FRAMES_PER_WRITE
                time.sleep(PAUSE)  # pacing a producer, not synchronisation
        except OSError:
            pass

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.source.close()


def assert_frames_exact(body: bytes, mid_frame: bool = False) -> None:
    """`body` is consecutive frames of the feed from its first byte (`mid_frame`: from the
    first frame start, at most a frame in): each whole frame is the next counter's, byte
    for byte."""
    if mid_frame:
        start = next((i for i in range(FRAME_SIZE) if parse_frame(body[i:i + FRAME_SIZE])), 0)
        body = body[start:]
    first = parse_frame(body[:FRAME_SIZE])
    assert first is not None, f"the stream does not start with a frame: {body[:64]!r}"
    whole = len(body) // FRAME_SIZE
    expected = build_frames(first[0], whole, 0)
    if body[:len(expected)] != expected:
        bad = next(i for i in range(whole)
                   if body[i * FRAME_SIZE:(i + 1) * FRAME_SIZE] != expected[i * FRAME_SIZE:(i + 1) * FRAME_SIZE])
        got = parse_frame(body[bad * FRAME_SIZE:(bad + 1) * FRAME_SIZE])
        raise AssertionError(f"frame {bad} of {whole}: expected counter {first[0] + bad}, got "
                             f"{'a torn frame' if got is None else got[0]}")


def master_xml() -> str:
    return icecast_xml(mounts=f"<mount><mount-name>/live</mount-name><burst-size>{MASTER_BURST}"
                              f"</burst-size><queue-size>{MASTER_QUEUE}</queue-size></mount>")


def slave_xml(master: FanoutProcess, *mounts: str) -> str:
    relays = "".join(f"<relay><server>{master.host}</server><port>{master.port}</port>"
                     f"<mount>/live</mount><local-mount>{mount}</local-mount></relay>"
                     for mount in mounts)
    # A moved pull holds its listeners up to source-timeout while it reconnects: room for
    # a loaded machine.
    return icecast_xml(extra=relays).replace("<source-timeout>3<", f"<source-timeout>{WAIT}<")


def pulls_by_worker(slave: FanoutProcess, master: FanoutProcess) -> dict[int, int]:
    """Established connections to the master, by slave worker pid (workers with none: 0)."""
    counts = {}
    for worker in slave.workers():
        try:
            connections = worker.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        counts[worker.pid] = sum(1 for c in connections if c.raddr and c.raddr.port == master.port
                                 and c.status == psutil.CONN_ESTABLISHED)
    return counts


def pull_owner(slave: FanoutProcess, master: FanoutProcess) -> psutil.Process | None:
    owners = [pid for pid, count in pulls_by_worker(slave, master).items() if count]
    return psutil.Process(owners[0]) if len(owners) == 1 else None


def listen_elsewhere(slave: FanoutProcess, mount: str, away_from: psutil.Process) -> Listener:
    """A listener of `mount` on a worker other than `away_from` (stopped meanwhile, it
    accepts nobody); returned once it has audio."""
    away_from.suspend()
    try:
        listener = Listener(slave.host, slave.port, mount).start()
        assert listener.head.startswith(b"HTTP/1.0 200 OK\r\n"), listener.head
        wait_for(lambda: len(listener.body) >= 16 * 1024, WAIT, f"audio on {mount}")
    finally:
        away_from.resume()
    held_by = worker_of(slave, listener.local_port)
    assert held_by is not None and held_by.pid != away_from.pid
    return listener


def kill_worker(worker: psutil.Process) -> None:
    worker.kill()
    wait_for(lambda: exited(worker), WAIT, "the worker to die")


@pytest.fixture(scope="module")
def master(tmp_path_factory):
    server = start_fanout(master_xml(), tmp_path_factory.mktemp("master"), workers=1)
    feed = FrameSource(server, "/live")
    yield server
    feed.close()
    assert server.stop() == 0


def test_a_killed_workers_pull_moves_and_a_listener_elsewhere_keeps_an_exact_stream(master, tmp_path):
    slave = start_fanout(slave_xml(master, "/relayed"), tmp_path, workers=2)
    try:
        owner = wait_for(lambda: pull_owner(slave, master), WAIT, "the relay's pull in a worker")
        listener = listen_elsewhere(slave, "/relayed", away_from=owner)
        kill_worker(owner)
        wait_for(lambda: "relay /relayed from" in slave.output().split("taking over the mount")[-1],
                 WAIT, "the pull to stream again in the surviving worker")
        mark = len(listener.body)
        wait_for(lambda: len(listener.body) >= mark + AFTER_MOVE or listener.closed.is_set(), WAIT,
                 "the stream after the move")
        assert not listener.closed.is_set(), "the listener was disconnected by the move"
        assert_frames_exact(bytes(listener.body))
        output = slave.output()
        assert "relay /relayed: the new connection continues the stream exactly" in output
        assert "Traceback" not in output
        listener.close()
    finally:
        assert slave.stop() == 0


def test_a_worker_added_later_takes_its_share_and_no_ring_has_two_writers(master, tmp_path):
    """Two relays on two workers; one worker dies: the survivor runs both, then the
    replacement takes one back (the survivor stops it first: hand-over). Listeners of
    both mounts on the survivor keep exact streams through both moves."""
    slave = start_fanout(slave_xml(master, "/one", "/two"), tmp_path, workers=2)
    try:
        wait_for(lambda: sorted(pulls_by_worker(slave, master).values()) == [1, 1], WAIT,
                 "one pull in each worker")
        victim = slave.workers()[1]
        listeners = [listen_elsewhere(slave, mount, away_from=victim) for mount in ("/one", "/two")]
        kill_worker(victim)
        wait_for(lambda: slave.output().count("booted (pid") == 3, WAIT, "the replacement booted")
        wait_for(lambda: "handing it on" in slave.output(), WAIT, "a relay handed to the new worker")
        wait_for(lambda: sorted(pulls_by_worker(slave, master).values()) == [1, 1], WAIT,
                 "one pull in each worker again")
        wait_for(lambda: slave.output().count("continues the stream exactly") == 2, WAIT,
                 "both moves spliced exactly")
        for listener in listeners:
            mark = len(listener.body)
            wait_for(lambda: len(listener.body) >= mark + AFTER_MOVE or listener.closed.is_set(),
                     WAIT, "the stream after the moves")
            assert not listener.closed.is_set(), "a listener was disconnected by a move"
            assert_frames_exact(bytes(listener.body))
        output = slave.output()
        handed = re.search(r"relay (/\w+): worker (\d+) stops it, handing it on to worker (\d+)",
                           output)
        mount, old, new = handed.groups()
        stopped = output.index(f"relay {mount}: stopped here (worker {old}) to be handed on")
        taken = output.index(f"relay {mount}: taking over the mount (worker {new})", handed.end())
        assert stopped < taken, "the new owner wrote the ring before the old one stopped"
        assert "Traceback" not in output
        for listener in listeners:
            listener.close()
    finally:
        assert slave.stop() == 0


def test_a_listener_on_another_worker_wakes_an_on_demand_pull(master, tmp_path):
    """The on-demand pull runs in one worker; a listener held by the other says so
    (DemandRelay, through the supervisor: WakeRelay), and the pull connects at once:
    nobody polls a listener count."""
    slave = start_fanout(icecast_xml(extra=f"<relay><server>{master.host}</server><port>"
                                           f"{master.port}</port><mount>/live</mount><local-mount>"
                                           "/od</local-mount><on-demand>1</on-demand></relay>"),
                         tmp_path, workers=2)
    try:
        claimed = wait_for(lambda: re.search(r"relay on /od \(worker (\d+),", slave.output()), WAIT,
                           "the idle on-demand mount claimed by a worker")
        pids = re.findall(r"worker (\d+) booted \(pid (\d+)\)", slave.output())
        owner = psutil.Process(int(dict(pids)[claimed.group(1)]))
        assert sum(pulls_by_worker(slave, master).values()) == 0
        owner.suspend()  # the listener's request goes to the other worker
        try:
            sock = socket.create_connection((slave.host, slave.port), timeout=WAIT)
            sock.sendall(b"GET /od HTTP/1.0\r\n\r\n")
            port = sock.getsockname()[1]
            held_by = wait_for(lambda: worker_of(slave, port), WAIT, "the request accepted")
        finally:
            owner.resume()
        assert held_by.pid != owner.pid
        head, body = read_head(sock)
        assert head.startswith(b"HTTP/1.0 200 OK\r\n"), head
        data = bytearray(body)
        while len(data) < 32 * 1024:
            data += sock.recv(65536)
        # An idle on-demand mount's ring is made before its upstream says what it carries
        # (relay_demand.py): no MP3 sync points, so the listener may start mid-frame.
        assert_frames_exact(bytes(data), mid_frame=True)
        assert pulls_by_worker(slave, master)[owner.pid] == 1
        sock.close()
    finally:
        assert slave.stop() == 0
