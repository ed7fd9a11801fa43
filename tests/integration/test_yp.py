"""YP `<directory>` listings on a real fanout, against a stand-in directory server (issue 11).

tests/support/ypserver.py answers as dir.xiph.org's yp-cgi did. fanout lists each public
mount a moment after its source starts (`--yp-add-delay`; Icecast waits a minute), touches
it 5 s later with its title and listeners, and removes it when its source ends or the
server stops; a directory that refuses or cannot be reached is said in one line.
"""
from __future__ import annotations

import socket
import threading
import time
from urllib.parse import quote

import pytest

from fanout import __version__
from fanout.protocol.identity import default_server_id
from fanout.protocol.yp import FIRST_TOUCH_DELAY
from tests.support.admin import get
from tests.support.clients import Listener, Source
from tests.support.server import icecast_xml, start_fanout
from tests.support.waiting import wait_for
from tests.support.ypserver import YpServer

LISTED, KEPT, PRIVATE = "/listed.mp3", "/kept.mp3", "/private.mp3"
ADD_DELAY = 0.5
ICE = {"ice-public": "1", "ice-name": "Fanout FM", "ice-genre": "jazz blues",
       "ice-description": "Late & live", "ice-url": "http://radio.example/",
       "ice-audio-info": "bitrate=128;channels=2;samplerate=44100"}


def closed_port() -> int:
    """A port nothing listens on (bound, then let go)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def directories():  # type: ignore[no-untyped-def]
    listing, banning = YpServer(touch_freq=200), YpServer(refuse_adds=True)
    yield listing, banning
    listing.close()
    banning.close()


class LiveSource:
    """A source client that keeps sending (a silent one would be dropped after the
    test config's 3 s source-timeout) until `close`."""

    def __init__(self, server, mount: str, public: str = "1") -> None:
        self.client = Source(server.host, server.port, mount, content_type="audio/mpeg",
                             headers=ICE | {"ice-public": public})
        assert self.client.accepted, self.client.response
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.feed, daemon=True)
        self.thread.start()

    def feed(self) -> None:
        try:
            while not self.stopping.wait(0.1):  # pacing a producer, not synchronisation
                self.client.send(b"\0" * 1024)
        except OSError:
            pass

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.client.close()


def test_public_mounts_are_added_touched_and_removed(directories, tmp_path) -> None:
    yp, banned = directories
    dead = f"http://127.0.0.1:{closed_port()}/cgi-bin/yp-cgi"
    config = icecast_xml(
        mounts=f"<mount><mount-name>{LISTED}</mount-name><cluster-password>c1</cluster-password>"
               "<max-listeners>50</max-listeners></mount>",
        extra=f"<directory><yp-url>{yp.url}</yp-url><yp-url-timeout>2</yp-url-timeout></directory>"
              f"<directory><yp-url>{banned.url}</yp-url></directory>"
              f"<directory><yp-url>{dead}</yp-url></directory>")
    server = start_fanout(config, tmp_path, args=("--yp-add-delay", str(ADD_DELAY)))
    try:
        listed, kept = LiveSource(server, LISTED), LiveSource(server, KEPT)
        private = LiveSource(server, PRIVATE, "0")
        started = time.monotonic()
        listener = Listener(server.host, server.port, LISTED).start()
        title = "Artist - Song"
        assert get(server, f"/admin/metadata?mount={LISTED}&mode=updinfo&song={quote(title)}").status == 200

        adds = wait_for(lambda: len(yp.of("add")) == 2 and yp.of("add"), 10, "both public mounts added")
        assert time.monotonic() - started >= ADD_DELAY
        add = next(event for event in adds if event.fields["listenurl"].endswith(LISTED))
        assert add.ok and add.user_agent == default_server_id(__version__)  # 2.4.4 sends its <server-id>
        assert {name: add.fields[name] for name in ("sn", "genre", "desc", "url", "listenurl",
                                                    "type", "b", "cpswd")} == {
            "sn": "Fanout FM", "genre": "jazz blues", "desc": "Late & live",
            "url": "http://radio.example/", "listenurl": f"http://127.0.0.1:{server.port}{LISTED}",
            "type": "audio/mpeg", "b": "128", "cpswd": "c1"}
        assert add.audio_info == {"bitrate": "128", "channels": "2", "samplerate": "44100"}

        touch = wait_for(lambda: [e for e in yp.of("touch") if e.sid == add.sid], 10 + FIRST_TOUCH_DELAY,
                         "the first touch")[0]
        assert touch.ok and (touch.fields["st"], touch.fields["listeners"],
                             touch.fields["max_listeners"]) == (title, "1", "50")

        listener.close()
        listed.close()
        wait_for(lambda: [e for e in yp.of("remove") if e.sid == add.sid], 10, "the remove at the source's end")
        assert len(yp.listed) == 1  # /kept.mp3 still
        output = server.output()
        assert f"YP: {banned.url} refused the add of {LISTED}: This server is banned" in output
        assert f"YP: {dead}: add of {LISTED} failed: cannot connect to 127.0.0.1:" in output
        assert all(not e.fields.get("listenurl", "").endswith(PRIVATE) for e in yp.events)
    finally:
        assert server.stop() == 0, server.output()
    kept_sid = next(e.sid for e in yp.of("add") if e.fields["listenurl"].endswith(KEPT))
    assert [e.sid for e in yp.of("remove")][-1] == kept_sid  # removed as the server stopped
    assert yp.listed == {}
    kept.close()
    private.close()
