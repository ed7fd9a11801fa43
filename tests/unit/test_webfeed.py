"""The status page's live feed in one worker (fanout/worker/webfeed.py), run in this
process's gevent hub: when it works the views out, whom it wakes, how many it serves.

Synchronisation is on gevent events with deadlines: `refresh` sets one on every call."""
from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import gevent
import gevent.socket
import pytest
from gevent.event import Event

from fanout.protocol.http import parse_head
from fanout.worker import web, webfeed
from fanout.worker.client import Connection
from fanout.worker.webfeed import MAX_STREAMS, StatusFeed

DEADLINE = 5.0


class Mounts:
    """What the feed looks at and works out, as the test changes it."""

    def __init__(self) -> None:
        self.title = "first"
        self.refreshes: list[float] = []  # time.monotonic() of each refresh
        self.refreshed = Event()
        self.looked = Event()

    def look(self) -> object:
        self.looked.set()
        return self.title

    def refresh(self) -> dict[str, dict[str, str]]:
        self.refreshes.append(time.monotonic())
        self.refreshed.set()
        return {"/live": {"title": self.title}}

    def wait_refresh(self, count: int) -> None:
        deadline = time.monotonic() + DEADLINE
        while len(self.refreshes) < count:
            self.refreshed.clear()
            assert self.refreshed.wait(max(0.0, deadline - time.monotonic())), (
                f"refresh {count} did not come")


@pytest.fixture
def running():
    feed, mounts = StatusFeed(), Mounts()
    assert feed.admit()
    feed.start(mounts.look, mounts.refresh)
    assert feed.ready.wait(DEADLINE)
    yield feed, mounts
    feed.streams = 0
    if feed.greenlet is not None:
        feed.greenlet.kill()


def test_a_stream_finds_the_views_worked_out_once_it_is_ready(running):
    feed, mounts = running
    assert feed.views == {"/live": {"title": "first"}} and len(mounts.refreshes) == 1


def test_an_announced_change_is_worked_out_without_waiting_for_a_look(running, monkeypatch):
    feed, mounts = running
    monkeypatch.setattr(webfeed, "LOOK_INTERVAL", 3600.0)  # no look would come in time
    mounts.looked.clear()
    feed.changed.set()  # cut the wait running now short, so the new interval applies
    assert mounts.looked.wait(DEADLINE)  # looked, and now waits for an hour
    woken = feed.updated
    mounts.title = "second"
    feed.mounts_changed()
    assert woken.wait(DEADLINE), "the streams were not woken"
    assert feed.views == {"/live": {"title": "second"}}


def test_an_unannounced_change_is_seen_by_the_next_look(running, monkeypatch):
    feed, mounts = running
    monkeypatch.setattr(webfeed, "LOOK_INTERVAL", 0.05)
    woken = feed.updated
    mounts.title = "second"  # a listener count, say: nobody tells the worker
    assert woken.wait(DEADLINE)
    assert feed.views == {"/live": {"title": "second"}}


def test_announcements_of_nothing_new_cost_no_refresh(running):
    feed, mounts = running
    for _ in range(20):
        feed.mounts_changed()
        gevent.idle()  # let the feed look (a look, not a refresh)
    mounts.title = "second"
    feed.mounts_changed()
    mounts.wait_refresh(2)
    assert len(mounts.refreshes) == 2


def test_two_refreshes_are_at_least_min_refresh_apart(running, monkeypatch):
    feed, mounts = running
    monkeypatch.setattr(webfeed, "MIN_REFRESH", 0.3)
    for count, title in enumerate(("second", "third", "fourth"), start=2):
        mounts.title = title
        feed.mounts_changed()
        mounts.wait_refresh(count)
    assert mounts.refreshes[3] - mounts.refreshes[2] >= 0.3


def test_the_feed_stops_with_its_last_stream_and_restarts_with_the_next(running):
    feed, mounts = running
    feed.leave()
    feed.mounts_changed()
    assert feed.greenlet is not None
    feed.greenlet.join(DEADLINE)
    assert feed.greenlet.dead
    mounts.title = "second"
    assert feed.admit()
    feed.start(mounts.look, mounts.refresh)
    assert feed.ready.wait(DEADLINE) and feed.views == {"/live": {"title": "second"}}


def test_streams_beyond_max_streams_are_not_admitted():
    feed = StatusFeed()
    assert all(feed.admit() for _ in range(MAX_STREAMS))
    assert not feed.admit()
    feed.leave()
    assert feed.admit() and not feed.admit()


# --- one event stream (fanout/worker/web.py stream_events), over a socketpair ---------------

class Acceptor:
    spec = None

    def keep(self, sock) -> None:  # pragma: no cover - streams are never kept
        raise AssertionError("an event stream's socket is never handed on")


def event_stream(feed: StatusFeed):
    """(the stream's greenlet, the browser's end of its socket)."""
    ours, browser = gevent.socket.socketpair()
    conn = Connection(ours, ("127.0.0.1", 1), Acceptor(), 1)
    worker = SimpleNamespace(cfg=SimpleNamespace(server_id="S"))
    request = parse_head(b"GET /status-events HTTP/1.1\r\nHost: x")
    return gevent.spawn(web.stream_events, worker, conn, request, feed), browser


def read_until(sock, marker: bytes, got: bytearray) -> None:
    with gevent.Timeout(DEADLINE, AssertionError(f"no {marker!r} in {bytes(got)!r}")):
        while marker not in got:
            got += sock.recv(65536)


def view(title: str) -> dict[str, str]:
    return {"mount": "/live", "path": "/live", "title": title}


def test_a_silent_stream_gets_a_keepalive_and_then_each_change(monkeypatch):
    monkeypatch.setattr(web, "KEEPALIVE_SECONDS", 0.1)
    feed = StatusFeed()
    feed.publish({"/live": view("one")})
    stream, browser = event_stream(feed)
    got = bytearray()
    read_until(browser, b'"title":"one"', got)
    read_until(browser, b": keep-alive\n\n", got)
    feed.publish({"/live": view("two")})
    read_until(browser, b'"title":"two"', got)
    stream.kill()
    assert got.startswith(b"HTTP/1.0 200 OK\r\n") and b"retry: " in got


def test_a_browser_that_stops_reading_is_dropped_after_send_timeout(monkeypatch, caplog):
    monkeypatch.setattr(web, "SEND_TIMEOUT", 0.2)
    caplog.set_level(logging.INFO, logger="fanout.web")
    feed = StatusFeed()
    feed.publish({})
    stream, browser = event_stream(feed)
    for number in range(64):  # 64 MB unread: far more than any socket buffer holds
        feed.publish({"/live": view(str(number) * 1024 * 1024)})
        gevent.idle()
        if stream.dead:
            break
    stream.join(DEADLINE)
    assert stream.dead and stream.exception is None
    assert "127.0.0.1: status events unread for 0.2s; dropped" in caplog.text
    browser.close()


def test_a_stream_whose_browser_left_ends_without_waiting_for_a_keepalive(monkeypatch):
    monkeypatch.setattr(web, "KEEPALIVE_SECONDS", 3600.0)
    feed = StatusFeed()
    feed.publish({"/live": view("one")})
    stream, browser = event_stream(feed)
    read_until(browser, b'"title":"one"', bytearray())
    browser.close()
    stream.join(DEADLINE)
    assert stream.dead and stream.exception is None
