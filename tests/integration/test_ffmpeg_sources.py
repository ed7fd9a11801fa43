"""ffmpeg as the source client, listeners judged by decoding what they received (§5.2, §5.4).

ffmpeg is a real encoder speaking Icecast's protocol (`PUT`, `Expect: 100-continue`,
`Ice-*` headers), so these tests cover the path a broadcaster's software takes, end to end.
The tests share one server, each streaming to a mount of its own.
"""
from __future__ import annotations

from itertools import takewhile

import pytest

from tests.integration.test_streaming import listeners_on_both_workers, wait_source_up
from tests.support.clients import Listener
from tests.support.media import FfmpegSource, decode, needs_ffmpeg, ogg_pages
from tests.support.server import icecast_xml, start_fanout
from tests.support.waiting import wait_for

pytestmark = needs_ffmpeg

ICE_MOUNT = "/ice.mp3"
MP3_MOUNT = "/live.mp3"
OGG_MOUNTS = {"vorbis": "/live.ogg", "opus": "/opus.ogg"}
# Small, so that a few seconds in, the Ogg header pages are far outside the burst window.
OGG_BURST = 8192
MOUNTS = "".join(f"<mount><mount-name>{mount}</mount-name><burst-size>{OGG_BURST}</burst-size></mount>"
                 for mount in OGG_MOUNTS.values())
# ffmpeg's icecast options and the listener header each one must become (§5.2).
ICE_OPTIONS = {"ice_name": "fanout lab", "ice_description": "a 440 Hz tone",
               "ice_genre": "test tones", "ice_public": "1"}
ICY_HEADERS = [b"icy-description:a 440 Hz tone", b"icy-genre:test tones",
               b"icy-name:fanout lab", b"icy-pub:1"]
LISTENERS = 4
MIN_CAPTURE_SECONDS = 3.0
MP3_BYTES_PER_SECOND = 128_000 // 8  # ffmpeg encodes at -b:a 128k


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_fanout(icecast_xml(mounts=MOUNTS), tmp_path_factory.mktemp("ffmpeg"), workers=2)
    yield srv
    assert srv.stop() == 0, srv.output()


def test_listener_head_carries_the_icy_headers_mapped_from_ffmpegs_ice_options(server):
    with FfmpegSource(server, ICE_MOUNT, "mp3", "audio/mpeg", ICE_OPTIONS):
        wait_source_up(server, ICE_MOUNT)
        listener = Listener(server.host, server.port, ICE_MOUNT).start()
        listener.close()
    lines = listener.head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.0 200 OK"
    assert b"Content-Type: audio/mpeg" in lines
    for header in ICY_HEADERS:
        assert header in lines, listener.head


def test_ffmpeg_mp3_stream_decodes_cleanly_at_listeners_on_every_worker(server, tmp_path):
    with FfmpegSource(server, MP3_MOUNT, "mp3", "audio/mpeg") as ffmpeg:
        wait_source_up(server, MP3_MOUNT)
        listeners = listeners_on_both_workers(server, MP3_MOUNT)
        while len(listeners) < LISTENERS:
            listeners.append(Listener(server.host, server.port, MP3_MOUNT).start())
        enough = MIN_CAPTURE_SECONDS * MP3_BYTES_PER_SECOND
        wait_for(lambda: all(len(l.body) >= enough for l in listeners), 3 * MIN_CAPTURE_SECONDS,
                 f"{MIN_CAPTURE_SECONDS}s of audio at every listener")
        ffmpeg.end()
    for number, listener in enumerate(listeners):
        assert listener.closed.wait(10), "the listener was not closed after the source left"
        assert listener.head.startswith(b"HTTP/1.0 200 OK\r\n")
        decoded = decode(bytes(listener.body), tmp_path / f"listener{number}.mp3")
        assert decoded.errors == "", f"listener {number}: {decoded.errors}"
        assert decoded.seconds >= MIN_CAPTURE_SECONDS


@pytest.mark.parametrize("codec, content_type, first_packet", [
    ("vorbis", "application/ogg", b"\x01vorbis"),
    ("opus", "audio/ogg", b"OpusHead"),
], ids=["vorbis", "opus"])
def test_ogg_listener_joining_mid_stream_gets_the_header_pages_first_and_decodes(
        server, tmp_path, codec, content_type, first_packet):
    mount = OGG_MOUNTS[codec]
    with FfmpegSource(server, mount, codec, content_type) as ffmpeg:
        wait_source_up(server, mount)
        early = Listener(server.host, server.port, mount).start()
        wait_for(lambda: len(early.body) >= 4 * OGG_BURST, 10, "the stream to run past the burst")
        late = Listener(server.host, server.port, mount, icy=True).start()
        wait_for(lambda: len(late.body) >= 4 * OGG_BURST, 10, "the late listener to play a while")
        ffmpeg.end()
    assert late.closed.wait(10), "the listener was not closed after the source left"
    assert late.head.startswith(b"HTTP/1.0 200 OK\r\n")
    assert late.header("Content-Type") == content_type
    assert late.header("icy-metaint") is None, "an Ogg mount never interleaves ICY metadata"
    pages = ogg_pages(bytes(late.body))
    headers = list(takewhile(lambda page: page.granule == 0, pages))
    assert pages[0].bos and pages[0].body.startswith(first_packet)
    assert [page.sequence for page in headers] == list(range(len(headers)))
    first_audio = pages[len(headers)]
    assert first_audio.sequence > len(headers), "the listener did not join mid-stream"
    assert {page.serial for page in pages} == {pages[0].serial}
    decoded = decode(bytes(late.body), tmp_path / f"late.{codec}.ogg")
    assert decoded.errors == ""
    assert decoded.seconds >= 1.0
    assert pages[-1].eos, "the stream's last page is missing"
