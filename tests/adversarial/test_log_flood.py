"""Threat: making the server log itself to death (issue 9, items 2 and 3).

500,000 malformed stream-list lines once made 133 MB of error.log in 20 s; any client can
likewise send bad request after bad request. Whatever the cause, a process writes at
most `MAX_LINES_PER_CAUSE` lines of one cause per `CAUSE_WINDOW`, then one summary line
counting the rest ("N similar messages suppressed; the last: …"), so nothing goes
unaccounted and nothing floods. access.log is a record, not a warning: every request
keeps its line.

And with every file descriptor in use, a log line once opened its file inside the log
call, and the EMFILE killed the pump that logged: now files are opened only when
configured or on SIGUSR1, and a reopen that cannot open says so once and goes on.
"""
from __future__ import annotations

import contextlib
import math
import re
import signal
import socket
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from fanout.logs import CAUSE_WINDOW, MAX_LINES_PER_CAUSE
from tests.support.admin import get, listeners_on_every_worker
from tests.support.bystander import Bystander
from tests.support.clients import raw_request
from tests.support.server import RELAY_PASSWORD, icecast_xml, start_fanout
from tests.support.waiting import wait_for

BAD_REQUESTS = 2000
CLIENTS = 4  # concurrent attackers
ERROR_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] (\w+) (\w+) ([\w.]+): (.*)$")
BAD_REQUEST_WARNING = "127.0.0.1: malformed request line (400)"
SUMMARY = re.compile(r"(\d+) similar messages suppressed; the last: (.*)")
GARBAGE_LINES = 30_000  # per stream-list answer of the hostile master (150 KB)


def logging_xml(logdir: Path, extra: str = "") -> str:
    return icecast_xml(extra=f"""<paths><logdir>{logdir}</logdir></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog>
  <loglevel>3</loglevel></logging>{extra}""")


def records(path: Path) -> list[re.Match[str]]:
    """error.log's records (traceback lines, indented, are not records)."""
    text = path.read_text("utf-8") if path.exists() else ""
    return [m for m in map(ERROR_LINE.fullmatch, text.splitlines()) if m]


def per_second_and_role(lines: list[re.Match[str]]) -> Counter[tuple[str, str]]:
    return Counter((m.group(1), m.group(3)) for m in lines)


@pytest.fixture
def server(tmp_path):
    srv = start_fanout(logging_xml(tmp_path), tmp_path, workers=2)
    yield srv
    assert srv.stop() == 0, srv.output()


def send_bad_requests(server, count: int) -> list[bytes]:
    def one(_: int) -> bytes:
        return raw_request(server.host, server.port, b"BAD\r\n\r\n")[:26]

    with ThreadPoolExecutor(CLIENTS) as pool:
        return list(pool.map(one, range(count)))


def test_a_flood_of_bad_requests_is_bounded_per_cause_and_every_one_accounted_for(
        server, tmp_path):
    with Bystander(server) as bystander:
        answers = send_bad_requests(server, BAD_REQUESTS)
        assert answers == [b"HTTP/1.0 400 Bad Request\r\n"] * BAD_REQUESTS

        def shown_and_summarised() -> tuple[list[re.Match[str]], list[re.Match[str]]] | None:
            lines = [m for m in records(tmp_path / "error.log") if m.group(4) == "fanout.client"]
            shown = [m for m in lines if m.group(5) == BAD_REQUEST_WARNING]
            summaries = [m for m in lines if SUMMARY.fullmatch(m.group(5))]
            counted = sum(int(SUMMARY.fullmatch(m.group(5)).group(1)) for m in summaries)
            return (shown, summaries) if len(shown) + counted == BAD_REQUESTS else None

        shown, summaries = wait_for(shown_and_summarised, 10,
                                    "every bad request to be logged or counted in a summary")
        bystander.assert_untouched()
    assert server.proc.poll() is None
    # A wall-clock second overlaps at most two windows of a worker's limiter, and a window
    # is summarised only after it showed its whole bound.
    assert max(per_second_and_role(shown).values()) <= 2 * MAX_LINES_PER_CAUSE
    assert summaries and len(summaries) * MAX_LINES_PER_CAUSE <= len(shown)
    for summary in summaries:
        assert summary.group(2) == "WARNING"
        assert SUMMARY.fullmatch(summary.group(5)).group(2) == BAD_REQUEST_WARNING
    access = (tmp_path / "access.log").read_text("utf-8").splitlines()
    bad = [line for line in access if re.fullmatch(r'127\.0\.0\.1 - - \[[^\]]+\] "BAD" 400 \d+ '
                                                    r'"-" "-" \d+', line)]
    assert len(bad) == BAD_REQUESTS  # every request its access line, never limited


class HostileMaster:
    """A "master" whose stream lists are GARBAGE_LINES lines a slave must skip."""

    BODY = b"a b\r\n" * GARBAGE_LINES

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.polls = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                self.polls += 1
                try:
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + self.BODY)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def test_a_master_listing_garbage_cannot_flood_the_slaves_error_log(tmp_path):
    master = HostileMaster()
    started = time.monotonic()
    slave = start_fanout(logging_xml(tmp_path, f"""
  <master-server>127.0.0.1</master-server><master-server-port>{master.port}</master-server-port>
  <master-password>{RELAY_PASSWORD}</master-password>
  <master-update-interval>1</master-update-interval>"""), tmp_path, workers=2)
    try:
        with Bystander(slave) as bystander:
            wait_for(lambda: master.polls >= 2, 20, "two polls of the hostile master")
            bystander.assert_untouched()
            assert get(slave, "/health", authorization=None).status == 200
        elapsed = time.monotonic() - started
    finally:
        assert slave.stop() == 0, slave.output()
        master.close()
    mine = [m for m in records(tmp_path / "error.log")
            if m.group(3) == "supervisor" and "stream list line" in m.group(5)]
    windows = math.ceil(elapsed / CAUSE_WINDOW) + 1
    # 2 polls × 30,000 lines were 60,000 warnings; at most the bound and one summary
    # per window remain (the poller may also say it once itself: fewer is fine).
    assert 0 < len(mine) <= windows * (MAX_LINES_PER_CAUSE + 1)
    assert (tmp_path / "error.log").stat().st_size < 1024 * 1024


def lowest_free_fd(process: psutil.Process) -> int:
    """With the fd limit set to this, the process cannot open anything (EMFILE)."""
    used = {int(entry.name) for entry in Path(f"/proc/{process.pid}/fd").iterdir()}
    return next(fd for fd in range(len(used) + 1) if fd not in used)


def test_no_descriptor_left_a_sigusr1_reopen_says_so_once_and_logging_goes_on(server, tmp_path):
    """Each worker's fd limit is lowered to its lowest free descriptor: nothing can be
    opened. SIGUSR1 (logrotate) then makes each worker try to reopen its two files, and
    the listeners that leave make the pumps write access lines."""
    with Bystander(server) as bystander:
        leaving = listeners_on_every_worker(server, "/bystander")
        workers = server.workers()
        limits = {w.pid: w.rlimit(psutil.RLIMIT_NOFILE) for w in workers}
        try:
            for worker in workers:
                worker.rlimit(psutil.RLIMIT_NOFILE, (lowest_free_fd(worker), limits[worker.pid][1]))
            server.proc.send_signal(signal.SIGUSR1)
            notes = [f"fanout: cannot open {tmp_path}/{name}: Too many open files (errno 24); "
                     "logging to the file opened before\n" for name in ("error.log", "access.log")]
            wait_for(lambda: all(server.output().count(note) == len(workers) for note in notes),
                     5, "each worker to say once that it cannot reopen each file")
            for listener in leaving:
                listener.close()
            wait_for(lambda: len([line for line in (tmp_path / "access.log").read_text()
                                  .splitlines() if '"GET /bystander HTTP/1.0" 200' in line
                                  and "fanout-test-listener" in line]) >= len(leaving), 10,
                     "the leaving listeners' access lines, written by the pumps")
            bystander.assert_untouched()
        finally:
            for worker in workers:
                with contextlib.suppress(psutil.NoSuchProcess):  # died: the test says why
                    worker.rlimit(psutil.RLIMIT_NOFILE, limits[worker.pid])
    reopened = [m for m in records(tmp_path / "error.log") if m.group(5) == "SIGUSR1: log files reopened"]
    assert sorted(m.group(3) for m in reopened) == ["supervisor", "worker0", "worker1"]
    assert all(server.output().count(note) == len(workers) for note in notes)  # once each
    assert server.proc.poll() is None
