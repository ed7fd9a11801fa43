"""Our .m3u and .xspf against what a running icecast2 (2.4.4) answers for the same mounts.

The real server's stats for each mount (its /admin/stats) go through our renderer; the
result must be the bytes icecast2 sent. Where we differ on purpose there is a test of
Icecast's behaviour with the reason next to it."""
from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET

import pytest

from fanout.protocol.playlists import (
    CONTENT_TYPES, M3U, XSPF, listen_url, playlist_request, render_m3u, render_xspf,
)
from fanout.protocol.stats import public_mount_stats
from tests.support.clients import Source, basic, raw_request
from tests.support.icecast import needs_icecast2, start_icecast2
from tests.support.media import needs_ffmpeg
from tests.support.server import ADMIN_PASSWORD
from tests.support.waiting import wait_for

pytestmark = [needs_icecast2, needs_ffmpeg, pytest.mark.interop]

HIDDEN = "<mount><mount-name>/hidden.mp3</mount-name><hidden>1</hidden></mount>"
MP3_HEADERS = {"ice-name": "My <Radio> & co", "ice-description": "Desc", "ice-genre": "Rock",
               "ice-bitrate": "128", "ice-url": "http://example.com/?a=1&b=2"}
HOSTNAME = "127.0.0.1"  # tests.support.icecast's <hostname>


def vorbis_with_comments() -> bytes:
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-v", "error", "-f", "lavfi", "-i", "sine=duration=5",
         "-c:a", "libvorbis", "-metadata", "ARTIST=The <Band>", "-metadata", "TITLE=Song & co",
         "-f", "ogg", "-"], check=True, capture_output=True).stdout


def fetch(server, path: str, host: str | None = None) -> tuple[dict[str, str], bytes]:
    lines = [f"GET {path} HTTP/1.0", f"Authorization: {basic('admin', ADMIN_PASSWORD)}"]
    if host is not None:
        lines.append(f"Host: {host}")
    raw = raw_request(server.host, server.port, ("\r\n".join(lines) + "\r\n\r\n").encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *fields = head.decode("latin-1").split("\r\n")
    assert status == "HTTP/1.0 200 OK", raw[:300]
    return {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}, body


def icecast_stats(server, mount: str) -> dict[str, str]:
    """The mount's stats as icecast2 keeps them ({} until its source is registered)."""
    _, body = fetch(server, f"/admin/stats?mount={mount}")
    source = ET.fromstring(body).find("source")
    return {} if source is None else {child.tag: child.text or "" for child in source}


@pytest.fixture(scope="module")
def icecast():
    server = start_icecast2(mounts=HIDDEN)
    # Each source sends all it will send at once; icecast2 keeps it for its 10 s
    # source-timeout, far longer than this module's few requests take.
    sources = [Source(server.host, server.port, "/live.mp3", content_type="audio/mpeg",
                      headers=MP3_HEADERS),
               Source(server.host, server.port, "/v.ogg", content_type="application/ogg"),
               Source(server.host, server.port, "/hidden.mp3", content_type="audio/mpeg")]
    sources[0].send_pattern(16384)
    sources[1].send(vorbis_with_comments())
    sources[2].send_pattern(16384)
    wait_for(lambda: "title" in icecast_stats(server, "/v.ogg"), 10, "the Vorbis comments read")
    wait_for(lambda: icecast_stats(server, "/live.mp3"), 10, "the MP3 source registered")
    yield server
    for source in sources:
        source.close()
    server.stop()


@pytest.mark.parametrize("host", [None, "example.org:1234", "example.org", "[::1]:8000"])
def test_m3u_is_icecasts_for_every_host_rule(icecast, host):
    headers, body = fetch(icecast, "/live.mp3.m3u", host)
    assert headers["content-type"] == CONTENT_TYPES[M3U]
    assert body == render_m3u(listen_url("/live.mp3", host, HOSTNAME, icecast.port))


@pytest.mark.parametrize("mount", ["/live.mp3", "/v.ogg"])
def test_xspf_is_icecasts_byte_for_byte(icecast, mount):
    stats = public_mount_stats(icecast_stats(icecast, mount))
    headers, body = fetch(icecast, f"{mount}.xspf")
    assert headers["content-type"] == CONTENT_TYPES[XSPF]
    location = listen_url(mount, None, HOSTNAME, icecast.port)
    assert location == stats["listenurl"]
    assert render_xspf([(location, stats)]) == body


def test_xspf_of_a_vorbis_stream_names_its_artist_and_title(icecast):
    _, body = fetch(icecast, "/v.ogg.xspf")
    assert b"<creator>The &lt;Band&gt;</creator>\n      <title>Song &amp; co</title>" in body


def test_icecast_writes_playlists_for_hidden_and_absent_mounts_we_do_not(icecast):
    # Icecast generates a playlist for any name. We answer 404 for a hidden mount, and then
    # must for an absent one too: otherwise the difference would reveal the hidden mount.
    for path in ("/hidden.mp3.m3u", "/absent.m3u"):
        _, body = fetch(icecast, path)
        assert body.endswith(path.removesuffix(".m3u").encode() + b"\r\n")
        assert playlist_request(path, {"/live.mp3", "/v.ogg"}) is None
