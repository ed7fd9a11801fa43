"""A relay that reconnects to a stream that does not continue its ring (a seam): newcomers
start after the seam, never before it.

The upstream is a small real server in the test (the peer under test is the relay): its
first connection sends OLD bytes and closes; its second answers only once the test says
so, then sends NEW bytes that do not continue the old ones, so the relay's splice looks for
a continuation for its whole SPLICE_WAIT and then marks a seam. A listener asking meanwhile
was admitted, before the fix, as soon as the relay told the workers it streamed again -
before the seam existed - and heard the old stream run into the new one.
"""
from __future__ import annotations

import socket
import threading

from tests.integration.test_relay import start_in
from tests.integration.test_relay_configured import relay_block
from tests.support.clients import Listener
from tests.support.hostile import AUDIO_HEAD, HostileServer
from tests.support.server import icecast_xml
from tests.support.waiting import wait_for

OLD, NEW = b"O", b"N"
OLD_BYTES = 96 * 1024


class SeamUpstream:
    """Connection 1: OLD_BYTES of OLD, then closed. Connection 2: answered once `go` is
    set, then NEW bytes until the server closes."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.server = HostileServer(self.answer)

    def answer(self, conn: socket.socket, line: str) -> None:
        if len(self.server.requests) == 1:
            conn.sendall(AUDIO_HEAD + OLD * OLD_BYTES)
            return
        self.go.wait(30)
        conn.sendall(AUDIO_HEAD)
        while not self.server.stopping.wait(0.05):
            conn.sendall(NEW * 2048)


def test_a_listener_arriving_during_a_reconnect_starts_after_the_seam(tmp_path):
    upstream = SeamUpstream()
    relay = start_in(tmp_path, "relay", icecast_xml(extra=relay_block(
        upstream.server, "/up", "/down")), 2)
    listener: Listener | None = None
    try:
        wait_for(lambda: "holding its listeners" in relay.output(), 15, "the relay holding")
        wait_for(lambda: len(upstream.server.requests) >= 2, 15, "the relay reconnecting")
        upstream.go.set()  # the splice now reads NEW bytes that do not continue the ring

        def admitted() -> Listener | None:
            candidate = Listener(relay.host, relay.port, "/down").start()
            if candidate.head.startswith(b"HTTP/1.0 200"):
                return candidate
            candidate.close()
            return None

        listener = wait_for(admitted, 15, "a listener admitted to /down")
        wait_for(lambda: len(listener.body) >= 4096, 10, "the listener's first bytes")
        body = bytes(listener.body)
        assert OLD not in body, f"started before the seam: {body[:64]!r}"
        assert body.strip(NEW) == b""
    finally:
        if listener is not None:
            listener.close()
        upstream.server.close()
        relay.stop()
