"""Fallback mounts (PROTOCOL.md §3.9, §5.1): listeners kept when their source leaves.

The live mounts carry the byte pattern; fallback mounts carry one repeated byte
(`FillSource`), so every listener's body shows which mount it came from.
"""
from __future__ import annotations

from tests.integration.test_relay import PacedSource, status_of, streamlist, wait_status
from tests.support.clients import (FillSource, Listener, assert_kept_through, fill_after,
                                   pattern_tail)
from tests.support.server import RELAY_PASSWORD, icecast_xml, start_fanout
from tests.support.waiting import wait_for

def mount_xml(name: str, **settings: str) -> str:
    children = "".join(f"<{key.replace('_', '-')}>{value}</{key.replace('_', '-')}>"
                       for key, value in settings.items())
    return f"<mount><mount-name>{name}</mount-name>{children}</mount>"


def test_listeners_wait_on_the_fallback_and_come_back_with_override(tmp_path):
    server = start_fanout(icecast_xml(mounts=mount_xml(
        "/live", fallback_mount="/auto", fallback_override="1")), tmp_path)
    auto, live = FillSource(server, "/auto"), PacedSource(server, "/live")
    try:
        wait_status(server, "/live", 200, 5)
        kept = Listener(server.host, server.port, "/live").start()
        assert_kept_through(kept, live.close)  # to the fallback, same connection
        # While the live source is away its mount is served from the fallback, and slaves
        # still see it listed (a "virtual" mount).
        early = Listener(server.host, server.port, "/live").start()
        assert early.head.startswith(b"HTTP/1.0 200 OK")
        wait_for(lambda: fill_after(early, 0), 10, "the fallback for a newcomer")
        assert b"/live\r\n" in streamlist(server, "relay", RELAY_PASSWORD)
        back = PacedSource(server, "/live")
        try:
            for listener in (kept, early):
                wait_for(lambda: pattern_tail(listener), 10, "the live stream again (override)")
            assert not kept.closed.is_set() and not early.closed.is_set()
        finally:
            back.close()
    finally:
        auto.close()
        server.stop()


def test_a_full_mount_sends_newcomers_down_its_fallback_chain(tmp_path):
    server = start_fanout(icecast_xml(mounts=(
        mount_xml("/small", max_listeners="1", fallback_mount="/gone", fallback_when_full="1")
        + mount_xml("/gone", fallback_mount="/big"))), tmp_path)
    small, big = PacedSource(server, "/small"), FillSource(server, "/big")
    try:
        wait_status(server, "/big", 200, 5)
        first = Listener(server.host, server.port, "/small").start()
        wait_for(lambda: pattern_tail(first), 10, "the small mount's stream")
        second = Listener(server.host, server.port, "/small").start()
        assert second.head.startswith(b"HTTP/1.0 200 OK")
        wait_for(lambda: fill_after(second, 0), 10, "/big's stream (via /gone, not live)")
        first.close()
        second.close()
    finally:
        small.close()
        big.close()
        server.stop()


def test_listeners_are_not_moved_to_a_fallback_of_another_format(tmp_path):
    server = start_fanout(icecast_xml(mounts=mount_xml("/live", fallback_mount="/other")), tmp_path)
    other = FillSource(server, "/other", content_type="audio/aacp")
    live = PacedSource(server, "/live")  # application/octet-stream
    try:
        wait_status(server, "/live", 200, 5)
        listener = Listener(server.host, server.port, "/live").start()
        wait_for(lambda: pattern_tail(listener), 10, "the live stream")
        live.close()
        assert listener.closed.wait(10), "a listener was moved to another format"
        assert not fill_after(listener, 0, amount=64)
    finally:
        other.close()
        server.stop()


def test_without_a_live_fallback_the_mount_is_404(tmp_path):
    server = start_fanout(icecast_xml(mounts=mount_xml("/live", fallback_mount="/nothing")), tmp_path)
    try:
        assert status_of(server, "/live") == 404
        assert b"/live" not in streamlist(server, "relay", RELAY_PASSWORD)
    finally:
        server.stop()
