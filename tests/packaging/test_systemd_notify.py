"""A real fanout under a stand-in for systemd (a datagram socket in $NOTIFY_SOCKET) says what
packaging/fanout.service (Type=notify) waits for: READY=1 once every worker serves,
RELOADING=1 … READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM."""
from __future__ import annotations

import signal
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from fanout import sdnotify
from tests.support.server import icecast_xml, start_fanout

# How long the server may take to send a notification it owes.
NOTIFY_TIMEOUT = 10.0
WORKERS = 2

# Remove this mark once the supervisor calls fanout.sdnotify (strict: the test then fails
# until it is removed, so the two cannot drift apart).


@pytest.fixture
def notify_socket(monkeypatch) -> Iterator[socket.socket]:
    # A short directory: an AF_UNIX path is limited to 107 bytes.
    with tempfile.TemporaryDirectory(prefix="sdn", dir="/tmp") as name:
        path = str(Path(name) / "notify")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(NOTIFY_TIMEOUT)
        monkeypatch.setenv(sdnotify.ENV_VAR, path)  # start_fanout passes os.environ on
        yield sock
        sock.close()


def receive(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_supervisor_reports_ready_reload_and_stop(notify_socket, tmp_path):
    server = start_fanout(icecast_xml(), tmp_path, workers=WORKERS)
    try:
        assert receive(notify_socket) == ["READY=1", f"MAINPID={server.proc.pid}"]
        for worker in server.wait_workers(WORKERS):
            assert sdnotify.ENV_VAR not in psutil.Process(worker.pid).environ()
        server.proc.send_signal(signal.SIGHUP)
        assert receive(notify_socket)[0] == "RELOADING=1"
        assert receive(notify_socket) == ["READY=1", f"MAINPID={server.proc.pid}"]
        server.proc.send_signal(signal.SIGTERM)
        assert receive(notify_socket) == ["STOPPING=1"]
    finally:
        assert server.stop() == 0, server.output()
