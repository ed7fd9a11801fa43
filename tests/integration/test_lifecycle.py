"""Process lifecycle: start-up, config errors, signals, reload, worker death and limits."""
from __future__ import annotations

import signal
import socket
import subprocess
import sys

import psutil
import pytest

from tests.support.clients import Listener, Source, raw_request
from tests.support.server import LISTEN_LINE, icecast_xml, start_fanout
from tests.support.waiting import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_cli(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fanout", "--allow-root", *args], capture_output=True,
                          text=True, timeout=timeout)


def is_listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_invalid_value_exits_2_naming_the_element_before_binding(tmp_path):
    port = free_port()
    path = tmp_path / "bad.xml"
    path.write_text(icecast_xml(port=port, limits="<queue-size>lots</queue-size>"))
    result = run_cli("-c", str(path))
    assert result.returncode == 2
    assert "icecast/limits/queue-size: 'lots' is not valid" in result.stderr
    assert not is_listening(port)


def test_malformed_xml_exits_2(tmp_path):
    path = tmp_path / "broken.xml"
    path.write_text("<icecast><limits>")
    result = run_cli("-c", str(path))
    assert result.returncode == 2
    assert "broken.xml" in result.stderr


def test_check_config_accepts_the_sample_and_rejects_a_bad_file(tmp_path):
    assert run_cli("--check-config", "-c", "config.sample.xml").returncode == 0
    path = tmp_path / "bad.xml"
    path.write_text(icecast_xml(extra="<mount><max-listeners>1</max-listeners></mount>"))
    assert run_cli("--check-config", "-c", str(path)).returncode == 2


def test_built_in_config_prints_url_and_random_passwords(tmp_path):
    first = start_fanout(None, tmp_path, workers=1, args=("--port", "0"))
    second = start_fanout(None, tmp_path, workers=1, args=("--port", "0"))
    try:
        passwords = []
        for server in (first, second):
            line = next(l for l in server.lines if "source password:" in l)
            passwords.append(line.rsplit(":", 1)[1].strip())
            assert "admin password:" in server.output()
        assert passwords[0] != passwords[1] and len(passwords[0]) >= 12
        source = Source(first.host, first.port, "/live", password=passwords[0])
        assert source.accepted, source.response
        source.close()
    finally:
        assert first.stop() == 0 and second.stop() == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_exits_0_leaving_no_process(tmp_path, signum):
    server = start_fanout(icecast_xml(), tmp_path, workers=2)
    pids = [w.pid for w in server.workers()]
    source = Source(server.host, server.port, "/s")
    source.send(b"z" * 8192)
    listener = Listener(server.host, server.port, "/s").start()
    server.proc.send_signal(signum)
    assert server.proc.wait(15) == 0
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in pids)
    assert listener.closed.wait(5)
    assert not is_listening(server.port)


def test_sighup_applies_a_changed_config(tmp_path):
    server = start_fanout(icecast_xml(), tmp_path, workers=2)
    try:
        source = Source(server.host, server.port, "/m")
        source.send(b"a" * 8192)
        config = tmp_path / "icecast.xml"
        config.write_text(icecast_xml(port=server.port, mounts=(
            "<mount><mount-name>/m</mount-name><max-listeners>0</max-listeners></mount>")))
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in server.output(), 5, "the reload")
        # Every worker must apply it: try enough times to reach both.
        for _ in range(8):
            answer = raw_request(server.host, server.port, b"GET /m HTTP/1.0\r\n\r\n", timeout=2)
            assert answer.startswith(b"HTTP/1.0 403 Forbidden"), answer[:60]
        source.close()
    finally:
        assert server.stop() == 0


def test_sighup_with_a_bad_file_keeps_the_running_config(tmp_path):
    server = start_fanout(icecast_xml(), tmp_path, workers=2)
    try:
        (tmp_path / "icecast.xml").write_text("<icecast><limits><clients>x</clients></limits></icecast>")
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "keeping the running config" in server.output(), 5, "the refusal")
        assert "icecast/limits/clients" in server.output()
        source = Source(server.host, server.port, "/still")
        assert source.accepted
        source.close()
    finally:
        assert server.stop() == 0


def test_a_dead_worker_is_replaced(tmp_path):
    server = start_fanout(icecast_xml(), tmp_path, workers=2)
    try:
        victim = server.workers()[0]
        victim.send_signal(signal.SIGKILL)
        wait_for(lambda: len([w for w in server.workers() if w.pid != victim.pid]) == 2, 5,
                 "a replacement worker")
        wait_for(lambda: server.output().count("booted (pid") == 3, 5, "the replacement to boot")
        source = Source(server.host, server.port, "/after")
        assert source.accepted
        source.close()
    finally:
        assert server.stop() == 0


def test_a_worker_that_cannot_boot_stops_the_server_with_status_3(tmp_path):
    config = tmp_path / "icecast.xml"
    config.write_text(icecast_xml())
    code = ("import sys, fanout.supervisor as s; s.WORKER_MODULE = 'fanout.no_such_worker'; "
            "from fanout.cli import main; sys.exit(main(sys.argv[1:]))")
    result = subprocess.run([sys.executable, "-c", code, "-c", str(config), "--workers", "2",
                             "--allow-root"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 3
    assert "before it booted; stopping the server" in result.stderr
    assert LISTEN_LINE.search(result.stdout)


def test_clients_limit_refuses_with_403_across_workers(tmp_path):
    server = start_fanout(icecast_xml(limits="<clients>3</clients>").replace(
        "<clients>500</clients>", ""), tmp_path, workers=2)
    try:
        source = Source(server.host, server.port, "/full")
        source.send(b"b" * 8192)
        first = Listener(server.host, server.port, "/full").start()
        second = Listener(server.host, server.port, "/full").start()
        for _ in range(6):  # whichever worker accepts, the limit is server-wide
            answer = raw_request(server.host, server.port, b"GET /full HTTP/1.0\r\n\r\n")
            assert answer.startswith(b"HTTP/1.0 403 Forbidden"), answer[:60]
            assert answer.endswith(b"Icecast connection limit reached")
        first.close()
        second.close()
        source.close()
    finally:
        assert server.stop() == 0


def test_unwritable_logdir_exits_2_naming_the_element(tmp_path):
    path = tmp_path / "bad.xml"
    path.write_text(icecast_xml(extra=f"<paths><logdir>{tmp_path}/missing</logdir></paths>"))
    result = run_cli("-c", str(path))
    assert result.returncode == 2
    assert "icecast/paths/logdir" in result.stderr


def test_sigusr1_reopens_log_files_in_every_process(tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    server = start_fanout(icecast_xml(extra=f"<paths><logdir>{logdir}</logdir></paths>"), tmp_path)
    try:
        raw_request(server.host, server.port, b"GET /before HTTP/1.0\r\n\r\n")
        wait_for(lambda: b"/before" in (logdir / "access.log").read_bytes(), 5, "the access line")
        (logdir / "access.log").rename(logdir / "access.log.1")  # what logrotate does
        (logdir / "error.log").rename(logdir / "error.log.1")
        server.proc.send_signal(signal.SIGUSR1)
        wait_for(lambda: (logdir / "error.log").exists()
                 and (logdir / "error.log").read_bytes().count(b"SIGUSR1: log files reopened") == 3,
                 5, "the supervisor and both workers to reopen their files")
        for _ in range(6):  # reach both workers
            raw_request(server.host, server.port, b"GET /after HTTP/1.0\r\n\r\n")
        wait_for(lambda: (logdir / "access.log").exists()
                 and (logdir / "access.log").read_bytes().count(b"/after") == 6, 5,
                 "every worker to write to the new access.log")
        assert b"/after" not in (logdir / "access.log.1").read_bytes()
    finally:
        assert server.stop() == 0


def test_health_answers_503_while_draining_then_the_server_exits_0(tmp_path):
    server = start_fanout(icecast_xml(), tmp_path, workers=2, args=("--drain", "3"))
    assert raw_request(server.host, server.port, b"GET /health HTTP/1.0\r\n\r\n").startswith(
        b"HTTP/1.0 200")
    server.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: server.output().count("draining for 3.0s") == 2, 5, "both workers to drain")
    for _ in range(6):  # both workers answer 503 while they drain
        answer = raw_request(server.host, server.port, b"GET /health HTTP/1.0\r\n\r\n")
        assert answer.startswith(b"HTTP/1.0 503"), answer[:40]
    assert server.proc.wait(15) == 0
