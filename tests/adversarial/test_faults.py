"""Faults of the machine, not of a client: the open-file limit, a hung worker, a control
message that loses its fd, an internal error. The server stays up, everyone else keeps a
byte-exact stream, and each fault is said once in the log.

The faults are real: `prlimit` (the test's prefix, or `resource.prlimit` on a running
process) sets the open-file limit, SIGSTOP hangs a worker.
"""
from __future__ import annotations

import os
import re
import resource
import signal
import socket
from collections import Counter

import psutil

from tests.support.admin import get
from tests.support.bystander import Bystander
from tests.support.clients import Listener, PacedSource, locate_in_pattern, read_head
from tests.support.server import exited, icecast_xml, start_fanout, worker_of
from tests.support.waiting import wait_for

# The crowd that exhausts a worker's open files, and the limit every process runs under.
CROWD = 400
FD_LIMIT = 128
# The answer to a client refused near the open-file limit.
REFUSED = b"HTTP/1.0 503 Service Unavailable\r\n"
# Pattern bytes a trickle source sends per write, and the pause between writes: a mount
# whose un-read listeners never fall a queue behind during the test.
TRICKLE = 1024
TRICKLE_PAUSE = 0.1


def internal_errors(server) -> dict[str, int]:
    """fanout_internal_errors_total by unit, from /metrics."""
    answer = get(server, "/metrics")
    assert answer.status == 200
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r'^fanout_internal_errors_total\{where="([^"]+)"\} (\d+)$', answer.body.decode(), re.M)}


def ask_for(server, mount: str) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=20)
    sock.sendall(f"GET {mount} HTTP/1.0\r\n\r\n".encode())
    return sock


def fd_targets(pid: int) -> Counter[str]:
    """What process `pid`'s open fds point at (files, sockets, memfds), counted."""
    return Counter(os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd"))


def lowest_free_fd(pid: int) -> int:
    """The fd number process `pid` would get next: with the open-file limit set to it, the
    process can open nothing more (the kernel hands out the lowest free number)."""
    used = {int(fd) for fd in os.listdir(f"/proc/{pid}/fd")}
    return min(set(range(len(used) + 1)) - used)


def test_a_crowd_past_the_open_file_limit_gets_503_and_everyone_else_keeps_streaming(tmp_path):
    server = start_fanout(icecast_xml(), tmp_path, workers=2,
                          prefix=["prlimit", f"--nofile={FD_LIMIT}:{FD_LIMIT}"])
    crowd: list[socket.socket] = []
    try:
        assert f"open files: limit {FD_LIMIT}" in server.output()
        bystander = Bystander(server)
        trickle = PacedSource(server, "/crowd", TRICKLE, TRICKLE_PAUSE)
        crowd = [ask_for(server, "/crowd") for _ in range(CROWD)]
        heads = [read_head(sock)[0] for sock in crowd]
        served = [h for h in heads if h.startswith(b"HTTP/1.0 200 OK\r\n")]
        refused = [h for h in heads if h.startswith(REFUSED)]
        assert len(served) + len(refused) == CROWD, {h[:40] for h in heads}
        assert served and len(refused) >= CROWD // 4, (len(served), len(refused))
        bystander.assert_untouched()
        for sock in crowd:
            sock.close()
        # The workers notice the closed crowd (their pumps' sends fail) and serve again.
        wait_for(lambda: all(w.num_fds() < FD_LIMIT // 2 for w in server.workers()), 10,
                 "the workers to close the crowd's connections")
        again = [Listener(server.host, server.port, "/crowd").start() for _ in range(20)]
        assert all(l.head.startswith(b"HTTP/1.0 200 OK\r\n") for l in again)
        for listener in again:
            listener.close()
        bystander.assert_untouched()
        output = server.output()
        said = output.count("near the open-file limit (128 files): refusing new clients with 503")
        assert 1 <= said <= 2, output  # once per worker that refused
        summaries = [int(n) for n in re.findall(
            r"refused (\d+) new clients with 503 \(near the open-file limit\); accepting again",
            output)]
        assert 1 <= len(summaries) <= 2 and sum(summaries) <= len(refused), output
        assert "Traceback" not in output and "internal error" not in output
        assert set(internal_errors(server).values()) == {0}
        trickle.close()
        bystander.close()
    finally:
        for sock in crowd:
            sock.close()
        assert server.stop() == 0


def spare_the_source_worker(server, bystander: Bystander) -> tuple[psutil.Process, list[Listener]]:
    """The worker not holding the bystander's source (the victim of a test), and the
    bystander's listeners on it, which the bystander stops checking: it keeps only the
    listeners of the other worker, opening one more there if it has none."""
    port = bystander.source.sock.getsockname()[1]
    source_worker = wait_for(lambda: worker_of(server, port), 5, "the bystander source's worker")
    victim = next(w for w in server.workers() if w.pid != source_worker.pid)
    while not any(worker_of(server, l.local_port).pid == source_worker.pid
                  for l in bystander.listeners):
        bystander.listeners.append(Listener(server.host, server.port, bystander.mount).start())
        bystander.marks.append(0)
    on_victim = [worker_of(server, l.local_port).pid == victim.pid for l in bystander.listeners]
    kept = [(l, m) for l, m, lost in zip(bystander.listeners, bystander.marks, on_victim)
            if not lost]
    cut = [l for l, lost in zip(bystander.listeners, on_victim) if lost]
    bystander.listeners, bystander.marks = [l for l, _ in kept], [m for _, m in kept]
    return victim, cut


def test_a_hung_worker_is_killed_and_replaced_and_the_other_keeps_its_listeners(tmp_path):
    server = start_fanout(icecast_xml(), tmp_path, workers=2, args=("--timeout", "3"))
    try:
        bystander = Bystander(server)
        victim, cut = spare_the_source_worker(server, bystander)
        victim.send_signal(signal.SIGSTOP)
        wait_for(lambda: exited(victim), 15, "the hung worker to be killed")
        wait_for(lambda: server.output().count("booted (pid") == 3, 15, "a replacement worker")
        output = server.output()
        assert re.search(rf"worker \d \(pid {victim.pid}\) sent no heartbeat for [\d.]+s "
                         r"\(timeout 3.0s\); killing it", output), output
        assert f"(pid {victim.pid}) died with status -9; replacing it" in output
        bystander.assert_untouched()
        listener = Listener(server.host, server.port, bystander.mount).start()
        assert listener.head.startswith(b"HTTP/1.0 200 OK\r\n")
        listener.close()
        assert "Traceback" not in server.output()
        bystander.close()
        for listener in cut:
            listener.close()
    finally:
        assert server.stop() == 0


def test_a_replacement_the_system_refuses_is_started_once_it_can_be(tmp_path):
    """The supervisor is out of open files when a worker dies: it says so once, keeps
    serving with the other worker, and starts the replacement when fds are free."""
    server = start_fanout(icecast_xml(), tmp_path, workers=2)
    try:
        bystander = Bystander(server)
        victim, cut = spare_the_source_worker(server, bystander)
        supervisor = server.proc.pid
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.prlimit(supervisor, resource.RLIMIT_NOFILE, (lowest_free_fd(supervisor), hard))
        try:
            victim.send_signal(signal.SIGKILL)
            wait_for(lambda: "cannot start worker" in server.output(), 10, "the refused start")
            bystander.assert_untouched()
        finally:
            resource.prlimit(supervisor, resource.RLIMIT_NOFILE, (soft, hard))
        wait_for(lambda: server.output().count("booted (pid") == 3, 15, "the replacement")
        output = server.output()
        assert re.search(r"cannot start worker \d \(Too many open files\); trying again", output)
        assert output.count("cannot start worker") == 1 and "started after all" in output
        assert "Traceback" not in output
        bystander.assert_untouched()
        assert len(server.workers()) == 2
        bystander.close()
        for listener in cut:
            listener.close()
    finally:
        assert server.stop() == 0


def relay_config(upstream_port: int) -> str:
    return icecast_xml(extra=(f"<relay><server>127.0.0.1</server><port>{upstream_port}</port>"
                              "<mount>/live</mount><local-mount>/relayed</local-mount></relay>"))


def test_a_ring_that_arrives_without_its_fd_is_asked_for_again_and_nothing_leaks(tmp_path):
    """A mount_up whose ring fd the kernel dropped (MSG_CTRUNC: the worker is at its
    open-file limit) is logged once and asked for again once fds are free; the worker then
    serves that mount and holds no fd but its ring more than before. The relay's pull runs
    in the other worker (worker 0: the least loaded comes first), so the mount is claimed
    there while worker 1 is full."""
    (tmp_path / "up").mkdir()
    upstream = start_fanout(icecast_xml(), tmp_path / "up", workers=1)
    server = start_fanout(icecast_xml(), tmp_path, workers=2)
    try:
        feed = Bystander(upstream, "/live", listeners=1)
        pid = int(re.search(r"worker 1 booted \(pid (\d+)\)", server.output()).group(1))
        worker = psutil.Process(pid)
        before = fd_targets(worker.pid)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        full = lowest_free_fd(worker.pid)
        resource.prlimit(worker.pid, resource.RLIMIT_NOFILE, (full, hard))
        try:
            (tmp_path / "icecast.xml").write_text(relay_config(upstream.port))
            server.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: "the ring of /relayed arrived without its fd" in server.output(), 10,
                     "the lost ring")
        finally:
            resource.prlimit(worker.pid, resource.RLIMIT_NOFILE, (soft, hard))
        wait_for(lambda: "the ring of /relayed arrived this time" in server.output(), 10,
                 "the ring asked for again")
        assert "relay on /relayed (worker 0," in server.output()
        listener = Listener(server.host, server.port, "/relayed").start()
        assert listener.head.startswith(b"HTTP/1.0 200 OK\r\n"), listener.head
        wait_for(lambda: len(listener.body) >= 32 * 1024, 10, "the relayed stream")
        locate_in_pattern(bytes(listener.body))
        listener.close()
        feed.assert_untouched()
        # What the worker holds now that it did not before: the relayed mount's ring.
        ring = Counter({"/memfd:fanout-ring/relayed (deleted)": 1})
        wait_for(lambda: fd_targets(worker.pid) == before + ring, 10,
                 "the worker's fds back to what it held before, plus the ring")
        output = server.output()
        assert output.count("the ring of /relayed arrived without its fd") == 1, output
        assert "Traceback" not in output
        assert set(internal_errors(server).values()) == {0}
        feed.close()
    finally:
        assert server.stop() == 0
        assert upstream.stop() == 0


def test_an_internal_error_is_logged_once_counted_and_the_unit_restarted(tmp_path, monkeypatch):
    """Each worker's first pump crashes (FANOUT_INJECT_FAULT, the test-only hook of
    fanout/supervised.py): the crash is logged once with its traceback and counted in
    /metrics, and the restarted pump serves the listeners a byte-exact stream."""
    monkeypatch.setenv("FANOUT_INJECT_FAULT", "worker.pump")  # start_fanout passes it on
    server = start_fanout(icecast_xml(), tmp_path, workers=2)
    try:
        bystander = Bystander(server)  # its listeners' pumps are the first ones
        pumping = {worker_of(server, l.local_port).pid for l in bystander.listeners}
        said = "internal error in worker.pump"
        wait_for(lambda: server.output().count("InjectedFault: worker.pump") == len(pumping), 5,
                 "the injected crashes' log records")
        output = server.output()
        assert output.count(said) == output.count("Traceback") == len(pumping), output
        assert "faults will be injected into worker.pump (tests only)" in output
        errors = internal_errors(server)
        assert errors["worker.pump"] == len(pumping)
        assert sum(errors.values()) == len(pumping)
        bystander.assert_untouched()
        bystander.close()
    finally:
        assert server.stop() == 0
