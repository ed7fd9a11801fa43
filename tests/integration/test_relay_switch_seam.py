"""A relay streaming from its backup upstream switches back to its preferred one, whose
stream does not continue the ring (a seam): a listener arriving during the switch is let in
at once and starts after the seam, never before it.

Both upstreams are small real servers in the test (the peer under test is the relay). The
preferred one refuses the relay's first request, so the relay streams from the backup,
which sends OLD bytes and then holds the connection. The relay's next look at the preferred
one is answered with a head only; its NEW bytes, which do not continue the old ones, wait
until the test says so. When the relay switches it hangs up on the backup: a listener asks
then, while the relay's splice still looks for a continuation (for its SPLICE_WAIT) before
marking the seam. Before the fix that listener was let in before the seam existed: it got
the backup's last bytes as its burst and heard them run into the preferred stream.
"""
from __future__ import annotations

import socket
import threading

from tests.integration.test_relay import start_in
from tests.support.clients import Listener
from tests.support.hostile import AUDIO_HEAD, HostileServer
from tests.support.server import icecast_xml
from tests.support.waiting import wait_for

OLD, NEW = b"O", b"N"
OLD_BYTES = 96 * 1024  # more than the default burst: a newcomer before the seam gets OLD


class Backup:
    """Sends OLD_BYTES of OLD, then holds the connection; `dropped` is set once the relay
    hung up on it (it switched away)."""

    def __init__(self) -> None:
        self.dropped = threading.Event()
        self.server = HostileServer(self.answer)

    def answer(self, conn: socket.socket, line: str) -> None:
        conn.sendall(AUDIO_HEAD + OLD * OLD_BYTES)
        while conn.recv(4096):
            pass
        self.dropped.set()


class Preferred:
    """Refuses the first request (the relay starts on the backup); answers the next with a
    head at once, then NEW bytes once `go` is set, until the server closes."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.server = HostileServer(self.answer)

    def answer(self, conn: socket.socket, line: str) -> None:
        if len(self.server.requests) == 1:
            conn.sendall(b"HTTP/1.0 503 Service Unavailable\r\n\r\n")
            return
        conn.sendall(AUDIO_HEAD)
        self.go.wait(30)
        while not self.server.stopping.wait(0.05):  # pacing the peer, not synchronisation
            conn.sendall(NEW * 2048)


def host(server: HostileServer) -> str:
    return (f"<host><server>{server.host}</server><port>{server.port}</port>"
            "<mount>/up</mount></host>")


def test_a_listener_arriving_during_a_switch_to_the_preferred_upstream_starts_after_the_seam(
        tmp_path):
    preferred, backup = Preferred(), Backup()
    relay = start_in(tmp_path, "relay", icecast_xml(extra=(
        "<relay><local-mount>/down</local-mount><retry-delay>1</retry-delay>"
        f"{host(preferred.server)}{host(backup.server)}</relay>")), 2)
    listener: Listener | None = None
    try:
        assert backup.dropped.wait(20), "the relay never switched away from the backup"
        # The relay hung up on the backup only after it switched: it is splicing now.
        listener = Listener(relay.host, relay.port, "/down").start()
        assert listener.head.startswith(b"HTTP/1.0 200"), listener.head  # not refused
        preferred.go.set()
        wait_for(lambda: len(listener.body) >= 4096, 10, "the listener's first bytes")
        body = bytes(listener.body)
        assert OLD not in body, f"started before the seam: {body[:64]!r}"
        assert body.strip(NEW) == b""
        assert "is back; switching to it" in relay.output()
    finally:
        if listener is not None:
            listener.close()
        preferred.server.close()
        backup.server.close()
        relay.stop()
