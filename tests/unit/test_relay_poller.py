"""The master poll: fetch → parse → plan → apply, with the network and pulls faked; and the
fetch itself against a real hostile peer."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import gevent
import pytest

from fanout.config import MasterConfig
from fanout.protocol.upstream import parse_response_head
from fanout import httpclient as fetch_module
from fanout.relay import poller as poller_module
from fanout.httpclient import MAX_BODY, FetchError, connect, fetch, request_head
from fanout.protocol.streamlist import MAX_LINES, SKIP_EXAMPLES
from fanout.relay.poller import (KH_STREAMS_PATH, LOGGED_CHANGES, MAX_RELAYED_MOUNTS,
                                 START_BATCH, MasterPoller)
from tests.support.hostile import HostileServer, answer, endless, trickle

LIST_HEAD = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n"


@dataclass
class FakePull:
    spec: object
    on_ended: object
    running: bool = True
    retried: int = 0

    def stop(self) -> None:
        self.running = False

    def retry_now(self) -> None:
        self.retried += 1


@dataclass
class FakeHost:
    local: set[str] = field(default_factory=set)
    registration: str = ""
    refreshes: list[float | None] = field(default_factory=list)  # asked with, per poll

    def local_mounts(self) -> set[str]:
        return self.local

    def redirect_registration(self, refresh: float | None = None) -> str:
        self.refreshes.append(refresh)
        return self.registration

    def start_relay(self, spec, on_ended) -> FakePull:
        return FakePull(spec, on_ended)


class Answers(list):
    """Queue of what the master answers: (status line, body) or a FetchError."""

    requests: list[bytes]


@pytest.fixture
def answers(monkeypatch):
    queue = Answers()
    queue.requests = []

    def fake_fetch(host, port, request, tls=False):
        queue.requests.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        return parse_response_head(status), body

    monkeypatch.setattr(poller_module, "fetch", fake_fetch)
    monkeypatch.setattr(poller_module, "START_PAUSE", 0.0)  # batches still yield to the hub
    return queue


def make_poller(host=None) -> MasterPoller:
    return MasterPoller(host or FakeHost(), MasterConfig("master", 8000, password="pw"))


OK = b"HTTP/1.0 200 OK"
NOT_KH = (b"HTTP/1.0 400 Bad Request", b"")


def test_a_2_4_4_master_is_asked_for_streams_once_then_streamlist_txt(answers):
    poller = make_poller()
    answers += [NOT_KH, (OK, b"/a\r\n"), (OK, b"/a\r\n")]
    poller.poll_once()
    poller.poll_once()
    paths = [r.split(b" ")[1] for r in answers.requests]
    assert paths == [KH_STREAMS_PATH.encode(), b"/admin/streamlist.txt", b"/admin/streamlist.txt"]
    assert list(poller.pulls) == ["/a"]


def test_kh_masters_lines_are_fetched_with_the_relay_credentials(answers):
    poller = make_poller()
    answers.append((OK, b"/admin/streams?mount=/a\r\n"))
    poller.poll_once()
    spec = poller.pulls["/a"].spec
    assert (spec.fetch_path, spec.credentials) == ("/admin/streams?mount=/a", ("relay", "pw"))


@pytest.mark.parametrize("failure", [FetchError("refused"), (b"HTTP/1.0 401 Unauthorized", b""),
                                     (b"ICY 200 OK", b"")])
def test_a_failed_poll_changes_nothing(answers, failure):
    poller = make_poller()
    poller.kh_master = False
    answers += [(OK, b"/a\r\n"), failure]
    poller.poll_once()
    pull = poller.pulls["/a"]
    poller.poll_once()
    assert poller.pulls == {"/a": pull} and pull.running


def test_an_empty_list_stops_every_relay(answers):
    poller = make_poller()
    poller.kh_master = False
    answers += [(OK, b"/a\r\n/b\r\n"), (OK, b"/a\r\n"), (OK, b"")]
    poller.poll_once()
    b = poller.pulls["/b"]
    poller.poll_once()
    assert not b.running and poller.pulls["/a"].running
    poller.poll_once()
    assert poller.pulls == {}


def test_kept_relays_retry_at_once_only_when_the_master_is_back_after_a_failed_poll(answers):
    poller = make_poller()
    poller.kh_master = False
    answers += [(OK, b"/a\r\n"), (OK, b"/a\r\n"), FetchError("refused"), (OK, b"/a\r\n"),
                (OK, b"/a\r\n")]
    for _ in range(5):
        poller.poll_once()
    # Only the poll after the failed one: a pull failing on its own (and triggering polls)
    # keeps its backoff instead of being retried on every poll.
    assert poller.pulls["/a"].retried == 1


def test_a_mount_held_by_a_local_source_is_not_relayed(answers):
    poller = make_poller(FakeHost(local={"/a"}))
    poller.kh_master = False
    answers.append((OK, b"/a\r\n/b\r\n"))
    poller.poll_once()
    assert list(poller.pulls) == ["/b"]


def test_a_redirect_slave_registers_on_every_poll_of_either_list(answers):
    poller = make_poller(FakeHost(registration="?rserver=10.0.0.2&rport=8000&interval=5"))
    answers += [NOT_KH, (OK, b"/a\r\n"), (OK, b"/a\r\n")]
    poller.poll_once()
    poller.poll_once()
    paths = [r.split(b" ")[1] for r in answers.requests]
    assert paths == [b"/admin/streams?rserver=10.0.0.2&rport=8000&interval=5",
                     b"/admin/streamlist.txt?rserver=10.0.0.2&rport=8000&interval=5",
                     b"/admin/streamlist.txt?rserver=10.0.0.2&rport=8000&interval=5"]


def test_a_master_asking_for_the_fast_schedule_gets_polls_that_often_until_one_fails(answers):
    host = FakeHost(registration="?rserver=10.0.0.2&rport=8000&interval=30")
    poller = make_poller(host)
    poller.kh_master = False
    fast = b"HTTP/1.0 200 OK\r\nX-Fanout-Refresh: 0.5"
    answers += [(fast, b"/a\r\n"), (fast, b"/a\r\n"), FetchError("refused"), (OK, b"/a\r\n")]
    delays = []
    for _ in range(4):
        poller.poll_once()
        delays.append(poller.next_delay())
    assert host.refreshes == [None, 0.5, 0.5, None]  # the schedule it is on, said in the poll
    assert delays == [0.5, 0.5, poller.master.update_interval, poller.master.update_interval]


def test_a_fast_schedule_is_not_taken_without_a_registration(answers):
    poller = make_poller()  # not registering for redirects
    poller.kh_master = False
    answers.append((b"HTTP/1.0 200 OK\r\nX-Fanout-Refresh: 0.5", b"/a\r\n"))
    poller.poll_once()
    assert poller.next_delay() == poller.master.update_interval


# -- bounds: a huge or junk list costs bounded work and a bounded number of log lines --------

def listing(names) -> bytes:
    return b"".join(b"/m%06d\r\n" % n for n in names)


def warnings_about(caplog, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and text in r.getMessage()]


def test_at_most_max_relayed_mounts_are_relayed_the_first_listed(answers):
    poller = make_poller()
    poller.kh_master = False
    answers.append((OK, listing(range(MAX_RELAYED_MOUNTS + 10))))
    poller.poll_once()
    assert sorted(poller.pulls) == [f"/m{n:06d}" for n in range(MAX_RELAYED_MOUNTS)]


def test_mounts_held_locally_do_not_use_up_the_limit(answers):
    poller = make_poller(FakeHost(local={"/m000000"}))
    poller.kh_master = False
    answers.append((OK, listing(range(MAX_RELAYED_MOUNTS + 10))))
    poller.poll_once()
    assert len(poller.pulls) == MAX_RELAYED_MOUNTS and "/m000000" not in poller.pulls
    assert f"/m{MAX_RELAYED_MOUNTS:06d}" in poller.pulls


def test_the_limit_is_told_once_while_it_lasts_and_again_when_it_comes_back(answers, caplog):
    poller = make_poller()
    poller.kh_master = False
    huge, small = (OK, listing(range(MAX_RELAYED_MOUNTS + 1))), (OK, listing(range(3)))
    answers += [huge, huge, huge, small, huge]
    for _ in range(3):
        poller.poll_once()
    told = warnings_about(caplog, "relayed: the limit per master")
    assert told == [f"master master:8000 lists {MAX_RELAYED_MOUNTS + 1} mounts (only the first "
                    f"{MAX_RELAYED_MOUNTS} are relayed: the limit per master)"]
    poller.poll_once()
    poller.poll_once()
    assert len(warnings_about(caplog, "relayed: the limit per master")) == 2


def test_a_list_longer_than_max_lines_is_read_up_to_there_and_told_once(answers, caplog):
    poller = make_poller()
    poller.kh_master = False
    body = b"junk\n" * (MAX_LINES - 1) + b"/a\n" + b"/b\n" * 10
    answers += [(OK, body), (OK, body)]
    poller.poll_once()
    poller.poll_once()
    assert list(poller.pulls) == ["/a"]
    assert warnings_about(caplog, "lines (only those") == [
        f"master master:8000 lists more than {MAX_LINES} lines (only those are read)"]


def test_skipped_lines_are_one_summary_per_poll(answers, caplog):
    poller = make_poller()
    poller.kh_master = False
    answers += [(OK, b"junk\n" * 5000 + b"/ok\n"), (OK, b"junk\n" * 5000 + b"/ok\n")]
    poller.poll_once()
    poller.poll_once()
    reasons = "; ".join(f"line {n}: does not start with '/': 'junk'"
                        for n in range(1, SKIP_EXAMPLES + 1))
    assert warnings_about(caplog, "skipped") == [
        f"master master:8000: 5000 stream list line(s) skipped ({reasons}; …)"] * 2
    assert list(poller.pulls) == ["/ok"]


def test_thousands_of_starts_let_the_hub_run_between_batches(answers):
    poller = make_poller()
    poller.kh_master = False
    answers.append((OK, listing(range(3 * START_BATCH))))
    seen: list[int] = []
    gevent.spawn(lambda: seen.append(len(poller.pulls)))  # runs at the first yield
    poller.poll_once()
    assert seen == [START_BATCH] and len(poller.pulls) == 3 * START_BATCH


def test_many_starts_and_stops_are_logged_one_by_one_only_up_to_a_few(answers, caplog):
    caplog.set_level(logging.INFO, logger="fanout.relay")
    poller = make_poller()
    poller.kh_master = False
    answers += [(OK, listing(range(200))), (OK, b"")]
    poller.poll_once()
    poller.poll_once()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("listed by the master master:8000" in m for m in messages) == LOGGED_CHANGES + 1
    assert f"{200 - LOGGED_CHANGES} more relays started: listed by the master master:8000" in messages
    assert f"{200 - LOGGED_CHANGES} more relays stopped: no longer listed by the master" in messages


# -- the fetch against a real (hostile) socket peer --------------------------------------------

@pytest.fixture
def peer():
    servers: list[HostileServer] = []

    def start(handler) -> HostileServer:
        servers.append(HostileServer(handler))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def fetch_from(server: HostileServer):
    return fetch(server.host, server.port, b"GET /admin/streamlist.txt HTTP/1.0\r\n\r\n")


def test_an_endless_body_fails_the_fetch_at_max_body(peer):
    server = peer(lambda conn, line: endless(conn, LIST_HEAD, b"/x\r\n" * 4096, server.stopping))
    with pytest.raises(FetchError, match=f"^body longer than {MAX_BODY} bytes$"):
        fetch_from(server)


def test_content_length_ends_the_body_and_a_shorter_body_fails(peer):
    whole = peer(lambda conn, line: answer(conn, b"HTTP/1.0 200 OK\r\nContent-Length: 4\r\n\r\n"
                                                 b"/a\r\nrest ignored"))
    assert fetch_from(whole)[1] == b"/a\r\n"
    cut = peer(lambda conn, line: answer(conn, b"HTTP/1.0 200 OK\r\nContent-Length: 40\r\n\r\n/a\r\n"))
    with pytest.raises(FetchError, match="^body ended after 4 of its 40 bytes$"):
        fetch_from(cut)
    huge = peer(lambda conn, line: answer(conn, b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n"
                                                % (MAX_BODY + 1)))
    with pytest.raises(FetchError, match=f"^body of {MAX_BODY + 1} bytes announced"):
        fetch_from(huge)


def test_a_trickling_master_is_cut_at_the_fetch_deadline(peer, monkeypatch):
    monkeypatch.setattr(fetch_module, "FETCH_DEADLINE", 0.5)
    server = peer(lambda conn, line: trickle(conn, LIST_HEAD + b"/a\r\n", server.stopping, 0.05))
    with pytest.raises(FetchError, match="^no complete answer in 0.5s$"):
        fetch_from(server)


def test_a_trickling_head_is_cut_at_its_deadline(peer):
    server = peer(lambda conn, line: trickle(conn, LIST_HEAD, server.stopping, 0.05))
    sock = connect(server.host, server.port)
    try:
        with pytest.raises(FetchError, match="^no response head in 0.3s$"):
            request_head(sock, b"GET /x HTTP/1.0\r\n\r\n", deadline=0.3)
    finally:
        sock.close()


@pytest.mark.parametrize("host", ["a..b", "x" * 64 + ".example"])
def test_a_host_name_the_resolver_refuses_is_a_fetch_error(host):
    with pytest.raises(FetchError, match="not a valid host name"):
        connect(host, 8000)
