"""Threat: addresses the operator shut out (<paths><deny-ip>, <paths><allow-ip>).

As Icecast 2.4.4, every new connection is checked against the files before its request is
read: an address listed in the deny file, or missing from the allow file, is dropped, the
connection closed without a byte of answer and without an access.log line, with 2.4.4's
debug line ("<address> is banned" / "is not allowed"). A file edited while the server runs
takes effect within RECHECK_INTERVAL. The address checked is the client's: on a PROXY
port the one in the PROXY header, from a trusted proxy (<x-forwarded-for>) the one in
X-Forwarded-For. Attackers connect from other loopback addresses (all of 127/8 is
local); the bystander streams from 127.0.0.1, which the allow file lists.
"""
from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from fanout.address_files import RECHECK_INTERVAL
from tests.support.bystander import Bystander
from tests.support.clients import read_head
from tests.support.server import icecast_xml, start_fanout
from tests.support.waiting import wait_for

TIMEOUT = 10
PROXY = "127.0.0.5"  # a trusted proxy (<x-forwarded-for>), not in the allow file itself
DENY = "# abusers\n127.0.0.2\n203.0.113.66\n"
ALLOW = "127.0.0.1\n127.0.0.3\n203.0.113.9\n203.0.113.66\n"  # .66: deny wins
LISTEN_LINE = re.compile(r"listening on http://127\.0\.0\.1:(\d+)/")
WORKERS = 2


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("ip-filter")
    (where / "deny").write_text(DENY)
    (where / "allow").write_text(ALLOW)
    (where / "logs").mkdir()
    return where


@pytest.fixture(scope="module")
def server(files):
    srv = start_fanout(icecast_xml(extra=f"""
        <listen-socket><port>0</port><bind-address>127.0.0.1</bind-address>
          <proxy-protocol>1</proxy-protocol></listen-socket>
        <paths><deny-ip>{files / "deny"}</deny-ip><allow-ip>{files / "allow"}</allow-ip>
          <logdir>{files / "logs"}</logdir><x-forwarded-for>{PROXY}</x-forwarded-for></paths>
        <logging><loglevel>4</loglevel></logging>"""), files, workers=WORKERS)
    yield srv
    assert srv.stop() == 0, srv.output()


@pytest.fixture(scope="module")
def bystander(server):
    with Bystander(server) as watcher:
        yield watcher


def answer(port: int, source: str, request: bytes = b"GET /health HTTP/1.0\r\n\r\n",
           prefix: bytes = b"") -> bytes:
    """Everything the server sends a request from `source` until it closes (a reset, after
    an unanswered close, ends it too)."""
    data = b""
    with socket.socket() as sock:
        sock.settimeout(TIMEOUT)
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        try:
            sock.sendall(prefix + request)
            while chunk := sock.recv(4096):
                data += chunk
        except ConnectionResetError:
            pass
    return data


def served(port: int, source: str, **kwargs: bytes) -> bool:
    return answer(port, source, **kwargs).startswith(b"HTTP/1.0 200 OK\r\n")


def proxy_port(server) -> int:
    return int(LISTEN_LINE.findall(server.output())[1])


def proxy_v1(client: str) -> bytes:
    return f"PROXY TCP4 {client} 127.0.0.1 40000 8000\r\n".encode()


def logged(server, line: str, count: int) -> None:
    wait_for(lambda: server.output().count(line) >= count, TIMEOUT, f"{count}x {line!r} logged")


def access_log(files: Path) -> str:
    return (files / "logs" / "access.log").read_text()


def test_a_denied_address_is_dropped_unanswered_and_others_go_on(server, bystander, files):
    line = "fanout.client: 127.0.0.2 is banned"
    before = server.output().count(line)
    assert answer(server.port, "127.0.0.2") == b""
    logged(server, line, before + 1)
    # Dropped before anything is read: not even a connection that sends nothing waits.
    with socket.create_connection(("127.0.0.1", server.port), TIMEOUT,
                                  source_address=("127.0.0.2", 0)) as sock:
        sock.settimeout(TIMEOUT)
        assert sock.recv(1) == b""
    logged(server, line, before + 2)
    assert served(server.port, "127.0.0.3")
    wait_for(lambda: "127.0.0.3 - - [" in access_log(files), TIMEOUT, "the served one's access line")
    assert "127.0.0.2" not in access_log(files)
    bystander.assert_untouched()
    assert server.proc.poll() is None


def test_with_an_allow_file_an_unlisted_address_is_dropped(server, bystander):
    line = "fanout.client: 127.0.0.4 is not allowed"
    before = server.output().count(line)
    assert answer(server.port, "127.0.0.4") == b""
    logged(server, line, before + 1)
    bystander.assert_untouched()


def test_behind_a_proxy_the_client_address_is_checked(server, bystander, files):
    port = proxy_port(server)
    # PROXY header from the trusted balancer: its client's address decides.
    assert served(port, PROXY, prefix=proxy_v1("203.0.113.9"))
    assert answer(port, PROXY, prefix=proxy_v1("203.0.113.10")) == b""
    logged(server, "fanout.client: 203.0.113.10 is not allowed", 1)
    assert answer(port, PROXY, prefix=proxy_v1("203.0.113.66")) == b""  # deny beats allow
    logged(server, "fanout.client: 203.0.113.66 is banned", 1)
    # X-Forwarded-For from the trusted proxy: dropped once the head names the client.
    forwarded = b"GET /health HTTP/1.0\r\nX-Forwarded-For: %s\r\n\r\n"
    assert served(server.port, PROXY, request=forwarded % b"203.0.113.9")
    assert answer(server.port, PROXY, request=forwarded % b"127.0.0.2") == b""
    logged(server, "fanout.client: 127.0.0.2 is banned", 1)
    # Without one, the proxy's own address is checked (and it is not in the allow file).
    assert answer(server.port, PROXY) == b""
    logged(server, f"fanout.client: {PROXY} is not allowed", 1)
    wait_for(lambda: "203.0.113.9 - - [" in access_log(files), TIMEOUT, "the served ones' lines")
    assert "127.0.0.2" not in access_log(files) and "203.0.113.66" not in access_log(files)
    bystander.assert_untouched()


def test_an_edited_file_takes_effect_while_running(server, bystander, files):
    allow = files / "allow"
    assert answer(server.port, "127.0.0.6") == b""
    try:
        allow.write_text(ALLOW + "127.0.0.6\n# and now .6\n")  # five entries: a new count
        every_worker_reads(server, allow, 5)
        assert served(server.port, "127.0.0.6")
        allow.write_text(ALLOW)
        every_worker_reads(server, allow, 4)
        assert answer(server.port, "127.0.0.6") == b""
    finally:
        allow.write_text(ALLOW)
    bystander.assert_untouched()
    assert server.proc.poll() is None


def every_worker_reads(server, path: Path, entries: int) -> None:
    """Wait until each worker logged reading `path` with `entries` entries once more (a
    worker looks at the file when a connection reaches it, RECHECK_INTERVAL apart)."""
    read = f'fanout: {entries} entries read from file "{path}"'
    before = [server.output().count(f"worker{index} {read}") for index in range(WORKERS)]
    wait_for(lambda: served(server.port, "127.0.0.1") and all(
        server.output().count(f"worker{index} {read}") > before[index] for index in range(WORKERS)),
        RECHECK_INTERVAL + TIMEOUT, f"every worker to read {path} with {entries} entries")


def test_a_missing_file_is_warned_once_at_start_and_filters_nothing(tmp_path):
    missing = tmp_path / "no-such-file"
    srv = start_fanout(icecast_xml(extra=f"<paths><deny-ip>{missing}</deny-ip></paths>"),
                       tmp_path, workers=WORKERS)
    try:
        assert served(srv.port, "127.0.0.2")
        warning = (f"WARNING supervisor fanout: icecast/paths/deny-ip: cannot read {missing}: "
                   "No such file or directory; no address is denied by it until it can be read")
        assert srv.output().count(warning) == 1, srv.output()
        assert srv.output().count("cannot read") == 1
    finally:
        assert srv.stop() == 0, srv.output()
