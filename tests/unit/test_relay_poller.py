"""The master poll: fetch → parse → plan → apply, with the network and pulls faked."""
from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from fanout.config import MasterConfig
from fanout.protocol.upstream import parse_response_head
from fanout.relay import poller as poller_module
from fanout.relay.fetch import FetchError
from fanout.relay.poller import KH_STREAMS_PATH, MasterPoller


@dataclass
class FakePull:
    spec: object
    host: object
    on_ended: object
    running: bool = False
    retried: int = 0

    def start(self) -> None:
        self.running = True

    def stop(self) -> None:
        self.running = False

    def retry_now(self) -> None:
        self.retried += 1


@dataclass
class FakeHost:
    local: set[str] = field(default_factory=set)
    registration: str = ""

    def local_mounts(self) -> set[str]:
        return self.local

    def redirect_registration(self) -> str:
        return self.registration


class Answers(list):
    """Queue of what the master answers: (status line, body) or a FetchError."""

    requests: list[bytes]


@pytest.fixture
def answers(monkeypatch):
    queue = Answers()
    queue.requests = []

    def fake_fetch(host, port, request):
        queue.requests.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        status, body = answer
        return parse_response_head(status), body

    monkeypatch.setattr(poller_module, "fetch", fake_fetch)
    monkeypatch.setattr(poller_module, "RelayPull", FakePull)
    monkeypatch.setattr(poller_module, "OnDemandPull", FakePull)
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


def test_an_empty_list_stops_every_relay_and_kept_ones_retry_now(answers):
    poller = make_poller()
    poller.kh_master = False
    answers += [(OK, b"/a\r\n/b\r\n"), (OK, b"/a\r\n"), (OK, b"")]
    poller.poll_once()
    b = poller.pulls["/b"]
    poller.poll_once()
    assert not b.running and poller.pulls["/a"].retried == 1
    poller.poll_once()
    assert poller.pulls == {}


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
