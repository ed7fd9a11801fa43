"""Single-mount relays, `<relay>`, against the real Icecast 2.4.4 on either side."""
from __future__ import annotations

from tests.integration.test_relay import servers, status_of  # noqa: F401
from tests.integration.test_relay_configured import relay_block, set_title, titles
from tests.integration.test_relay_icecast import assert_decodes, capture
from tests.support.icecast import needs_icecast2, start_icecast2
from tests.support.media import FfmpegSource, needs_ffmpeg
from tests.support.server import icecast_xml
from tests.support.waiting import wait_for

pytestmark = [needs_icecast2, needs_ffmpeg]


def test_fanout_relays_an_icecast2_mount_with_its_titles(servers, tmp_path):
    upstream = start_icecast2()
    source = FfmpegSource(upstream, "/live.mp3", "mp3", "audio/mpeg")
    try:
        wait_for(lambda: status_of(upstream, "/live.mp3") == 200, 15, "the icecast2 mount")
        relay = servers("relay", icecast_xml(extra=relay_block(upstream, "/live.mp3", "/relayed.mp3")))
        wait_for(lambda: status_of(relay, "/relayed.mp3") == 200, 15, "the relayed mount")
        listener = capture(relay, "/relayed.mp3", icy=True)
        assert listener.header("content-type") == "audio/mpeg"
        set_title(upstream, "/live.mp3", "Relayed from icecast2")
        wait_for(lambda: any(b"StreamTitle='Relayed from icecast2';" in b for b in titles(listener)),
                 15, "the icecast2 title at the relay's listener")
        assert_decodes(listener, tmp_path, "relayed.mp3")
    finally:
        source.stop()
        upstream.stop()


def test_icecast2_relays_a_fanout_mount(servers, tmp_path):
    upstream = servers("upstream", icecast_xml())
    source = FfmpegSource(upstream, "/live.ogg", "vorbis", "application/ogg")
    relay = None
    try:
        wait_for(lambda: status_of(upstream, "/live.ogg") == 200, 15, "the fanout mount")
        relay = start_icecast2(extra=relay_block(upstream, "/live.ogg", "/from-fanout.ogg"))
        wait_for(lambda: status_of(relay, "/from-fanout.ogg") == 200, 15,
                 "the mount on the icecast2 relay")
        assert_decodes(capture(relay, "/from-fanout.ogg"), tmp_path, "icecast-relay.ogg")
    finally:
        if relay is not None:
            relay.stop()
        source.stop()
