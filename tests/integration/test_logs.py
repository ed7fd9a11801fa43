"""access.log and error.log under <paths><logdir>, through a real fanout with two workers."""
from __future__ import annotations

import os
import re
import signal
import socket

import pytest

from tests.support.admin import get
from tests.support.clients import Listener, Source, basic
from tests.support.server import (
    ADMIN_PASSWORD, SOURCE_PASSWORD, icecast_xml, start_fanout,
)
from tests.support.waiting import wait_for

# ip - user [date] "request" status bytes "referer" "user agent" duration
CLF = re.compile(r'^(\S+) - (\S+) \[(\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "([^"]*)" '
                 r'(\d{3}) (\d+) "([^"]*)" "([^"]*)" (\d+)$')


def logging_xml(logdir, loglevel: int = 3) -> str:
    return icecast_xml(extra=f"""<paths><logdir>{logdir}</logdir></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog>
  <loglevel>{loglevel}</loglevel></logging>""")


@pytest.fixture
def server(tmp_path):
    srv = start_fanout(logging_xml(tmp_path), tmp_path, workers=2)
    yield srv
    assert srv.stop() == 0, srv.output()


def lines(path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def access_line(tmp_path, request: str, name: str = "access.log") -> re.Match | None:
    for line in lines(tmp_path / name):
        match = CLF.match(line)
        assert match, f"not in Combined Log Format: {line!r}"
        if match.group(4) == request:
            return match
    return None


def test_every_finished_request_is_one_combined_format_line(server, tmp_path):
    get(server, "/admin/stats", authorization=None)
    get(server, "/health", authorization=None)
    found = wait_for(lambda: access_line(tmp_path, "GET /admin/stats HTTP/1.0"), 5, "the line")
    assert found.group(5) == "401" and found.group(8) == "fanout-admin-test"
    health = wait_for(lambda: access_line(tmp_path, "GET /health HTTP/1.0"), 5, "the line")
    assert health.group(5) == "200" and int(health.group(6)) > 0


def test_listener_and_source_lines_carry_bytes_and_duration(server, tmp_path):
    source = Source(server.host, server.port, "/logged")
    source.send_pattern(32 * 1024)
    listener = Listener(server.host, server.port, "/logged").start()
    wait_for(lambda: len(listener.body) > 0, 5, "the listener's burst")
    source.close()
    assert listener.closed.wait(10)
    heard = wait_for(lambda: access_line(tmp_path, "GET /logged HTTP/1.0"), 5, "the listener line")
    assert heard.group(5) == "200" and int(heard.group(6)) >= len(listener.body)
    spoke = wait_for(lambda: access_line(tmp_path, "PUT /logged HTTP/1.1"), 5, "the source line")
    assert spoke.group(5) == "200" and spoke.group(9).isdigit()


def test_secrets_are_written_to_neither_log(server, tmp_path):
    get(server, f"/admin.cgi?mode=updinfo&pass={ADMIN_PASSWORD}&song=x", authorization=None)
    get(server, "/admin/stats", basic("admin", ADMIN_PASSWORD))
    source = Source(server.host, server.port, "/secret", password="wrong-" + SOURCE_PASSWORD)
    source.close()
    wait_for(lambda: access_line(tmp_path, "GET /admin.cgi?mode=updinfo&pass=*&song=x HTTP/1.0"),
             5, "the redacted line")
    for name in ("access.log", "error.log"):
        text = (tmp_path / name).read_text()
        assert ADMIN_PASSWORD not in text and SOURCE_PASSWORD not in text, name


@pytest.mark.parametrize("loglevel, shown, hidden", [(3, " INFO ", " DEBUG "), (4, " DEBUG ", None)])
def test_error_log_follows_loglevel(tmp_path, loglevel, shown, hidden):
    server = start_fanout(logging_xml(tmp_path, loglevel), tmp_path, workers=2)
    try:
        source = Source(server.host, server.port, "/lvl")
        source.send_pattern(8192)
        source.close()  # an INFO line
        socket.create_connection((server.host, server.port)).close()  # a DEBUG line
        wait_for(lambda: any(shown in line for line in lines(tmp_path / "error.log")), 5, shown)
        if hidden:
            assert not any(hidden in line for line in lines(tmp_path / "error.log"))
    finally:
        assert server.stop() == 0


def test_sigusr1_reopens_the_logs_after_rotation(server, tmp_path):
    get(server, "/health", authorization=None)
    wait_for(lambda: access_line(tmp_path, "GET /health HTTP/1.0"), 5, "the first line")
    os.rename(tmp_path / "access.log", tmp_path / "access.log.1")
    for worker in server.workers():
        os.kill(worker.pid, signal.SIGUSR1)  # the supervisor is to forward it (not yet wired)
    # A line written before a worker handled the signal still lands in the rotated file.
    wait_for(lambda: get(server, "/metrics", authorization=None) and
             access_line(tmp_path, "GET /metrics HTTP/1.0"), 5, "a line in the new access.log")
    assert access_line(tmp_path, "GET /health HTTP/1.0", "access.log.1")
