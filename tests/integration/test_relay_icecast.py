"""Master–slave relaying against the real Icecast 2.4.4, in both directions (issue 4)."""
from __future__ import annotations

import time

import pytest

from tests.integration.test_relay import MASTER_INTERVAL, servers, slave_xml, status_of  # noqa: F401
from tests.support.clients import Listener, basic, raw_request, split_icy
from tests.support.icecast import needs_icecast2, start_icecast2
from tests.support.media import FfmpegSource, decode, needs_ffmpeg
from tests.support.server import ADMIN_PASSWORD, RELAY_PASSWORD, icecast_xml
from tests.support.waiting import wait_for

pytestmark = [needs_icecast2, needs_ffmpeg]

HIDDEN = "<mount><mount-name>/hidden.mp3</mount-name><hidden>1</hidden></mount>"
# Audio bytes captured from a relayed mount before decoding it (~2 s at 128 kbit/s).
CAPTURE = 48 * 1024


def start_sources(server) -> list[FfmpegSource]:
    return [FfmpegSource(server, "/live.mp3", "mp3", "audio/mpeg"),
            FfmpegSource(server, "/live.ogg", "vorbis", "application/ogg"),
            FfmpegSource(server, "/hidden.mp3", "mp3", "audio/mpeg")]


def capture(server, mount: str, icy: bool = False) -> Listener:
    listener = Listener(server.host, server.port, mount, icy=icy).start()
    assert listener.head.startswith(b"HTTP/1.0 200"), listener.head
    return listener


def assert_decodes(listener: Listener, tmp_path, name: str) -> None:
    wait_for(lambda: len(listener.body) > CAPTURE, 15, f"{CAPTURE} bytes of {name}")
    listener.close()
    metaint = int(listener.header("icy-metaint") or 0)
    audio = split_icy(bytes(listener.body), metaint)[0] if metaint else bytes(listener.body)
    decoded = decode(audio, tmp_path / name)
    assert decoded.errors == "", decoded.errors
    assert decoded.seconds >= 1.0


@pytest.fixture
def icecast_master():
    master = start_icecast2(mounts=HIDDEN)
    sources: list[FfmpegSource] = []
    try:
        sources += start_sources(master)
        yield master
    finally:
        for source in sources:
            source.stop()
        master.stop()


def test_fanout_slave_of_icecast2_serves_public_mounts_with_titles(icecast_master, servers,
                                                                  tmp_path):
    slave = servers("slave", slave_xml(icecast_master))
    for mount in ("/live.mp3", "/live.ogg"):
        wait_for(lambda: status_of(slave, mount) == 200, MASTER_INTERVAL + 8, f"{mount} on the slave")
    assert status_of(icecast_master, "/hidden.mp3") == 200
    assert status_of(slave, "/hidden.mp3") == 404
    mp3 = capture(slave, "/live.mp3", icy=True)
    assert mp3.header("icy-metaint") == "16000"  # the upstream's
    assert mp3.header("content-type") == "audio/mpeg"
    update = ("GET /admin/metadata?mount=/live.mp3&mode=updinfo&song=Interop%20title HTTP/1.0\r\n"
              f"Authorization: {basic('admin', ADMIN_PASSWORD)}\r\n\r\n")
    assert b"200 OK" in raw_request(icecast_master.host, icecast_master.port, update.encode())
    wait_for(lambda: any(b"StreamTitle='Interop title';" in block
                         for block in split_icy(bytes(mp3.body), 16000)[1]),
             15, "the master's new title at the slave's listener")
    assert_decodes(mp3, tmp_path, "slave.mp3")
    assert_decodes(capture(slave, "/live.ogg"), tmp_path, "slave.ogg")


def test_icecast2_slave_of_fanout_relays_all_public_mounts(servers, tmp_path):
    master = servers("master", icecast_xml(mounts=HIDDEN))
    sources = start_sources(master)
    slave = start_icecast2(extra=f"""
  <master-server>{master.host}</master-server>
  <master-server-port>{master.port}</master-server-port>
  <master-password>{RELAY_PASSWORD}</master-password>
  <master-update-interval>1</master-update-interval>""")
    try:
        started = time.monotonic()
        for mount in ("/live.mp3", "/live.ogg"):
            wait_for(lambda: status_of(slave, mount) == 200, 15, f"{mount} on the icecast2 slave")
        print(f"\nmeasured: icecast2 slave serves both mounts after {time.monotonic() - started:.2f} s")
        assert status_of(master, "/hidden.mp3") == 200
        assert status_of(slave, "/hidden.mp3") == 404
        assert_decodes(capture(slave, "/live.mp3", icy=True), tmp_path, "icecast-slave.mp3")
        assert_decodes(capture(slave, "/live.ogg"), tmp_path, "icecast-slave.ogg")
    finally:
        slave.stop()
        for source in sources:
            source.stop()


def test_a_slave_registering_for_redirects_still_relays_an_icecast2_master(icecast_master,
                                                                          servers):
    # 2.4.4 knows nothing of KH's redirect registration: it must ignore the poll's query.
    slave = servers("slave", slave_xml(icecast_master, interval=5,
                                       extra="<master-redirect>1</master-redirect>"))
    wait_for(lambda: status_of(slave, "/live.mp3") == 200, 15, "/live.mp3 on the slave")
    # (Its access log drops queries: that the polls carried one is tests/unit/test_relay_poller.py's.)
    access = (icecast_master.workdir / "access.log").read_text()
    assert '"GET /admin/streamlist.txt HTTP/1.0" 200' in access
