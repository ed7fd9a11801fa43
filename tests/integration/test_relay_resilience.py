"""A slave whose master misbehaves or dies keeps serving, and relays again when it can."""
from __future__ import annotations

import signal
import socket
import threading
import time
from dataclasses import dataclass, field

import psutil
import pytest

from fanout.bench.serving import free_port
from tests.integration.test_relay import PacedSource, servers, slave_xml, status_of  # noqa: F401
from tests.support.server import icecast_xml
from tests.support.waiting import wait_for

GARBAGE = b"\x00\xff garbage \r\n\r\n" * 50
BAD_LIST = (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"
            b"not a mount\r\n" + b"/" + b"x" * 5000 + b"\r\nhttp://elsewhere/y\r\n\x01\x02\r\n")
UNAUTHORISED = b"HTTP/1.0 401 Authentication Required\r\n\r\n"


@dataclass
class FakeMaster:
    """A TCP server answering every connection with `answer` (None: never answers)."""

    answer: bytes | None
    sock: socket.socket = field(default_factory=socket.socket)
    connections: int = 0
    held: list[socket.socket] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.host, self.port = self.sock.getsockname()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            if self.answer is None:
                self.held.append(conn)  # accept, then stay silent
                continue
            try:
                conn.recv(4096)
                conn.sendall(self.answer)
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.mark.parametrize("answer", [GARBAGE, BAD_LIST, UNAUTHORISED, None],
                         ids=["garbage", "bad-lines", "401", "silent"])
def test_a_misbehaving_master_does_not_stop_or_hang_the_slave(servers, answer):
    master = FakeMaster(answer)
    try:
        slave = servers("slave", slave_xml(master, interval=1))
        # Two polls show the slave polls on after a bad answer; a silent master holds the
        # first poll, and the slave must serve meanwhile.
        polls = 1 if answer is None else 2
        wait_for(lambda: master.connections >= polls, 10, f"{polls} polls of the fake master")
        local = PacedSource(slave, "/local")
        try:
            assert wait_for(lambda: status_of(slave, "/local") == 200, 5, "the local mount")
        finally:
            local.close()
        assert slave.proc.poll() is None
        if answer is BAD_LIST:
            assert ("4 stream list line(s) skipped (line 1: contains a space or control "
                    "character; line 2: longer than 255 bytes; line 3: does not start with "
                    "'/': 'http://elsewhere/y'; …)") in slave.output()
    finally:
        master.close()


def test_slave_relays_again_after_its_master_was_down_for_10s(servers, tmp_path):
    port = free_port()
    master = servers("master", icecast_xml(port=port))
    slave = servers("slave", slave_xml(master))
    source = PacedSource(master, "/live")
    wait_for(lambda: status_of(slave, "/live") == 200, 10, "/live on the slave")
    workers = master.workers()
    master.proc.send_signal(signal.SIGKILL)
    source.close()
    psutil.wait_procs(workers, timeout=5)
    wait_for(lambda: status_of(slave, "/live") == 404, 3, "/live gone from the slave")
    time.sleep(10)  # the master stays down for 10 s (the scenario, not synchronisation)
    assert slave.proc.poll() is None
    assert "stream list poll failed" in slave.output()
    master = servers("master-again", icecast_xml(port=port))
    source = PacedSource(master, "/live")
    try:
        started = time.monotonic()
        wait_for(lambda: status_of(slave, "/live") == 200, 5, "/live relayed again")
        print(f"\nmeasured: relayed again {time.monotonic() - started:.2f} s after the master's "
              "source came back")
    finally:
        source.close()
