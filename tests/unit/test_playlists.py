"""/<mount>.m3u and /<mount>.xspf (fanout.protocol.playlists), read like Icecast 2.4.4's.

The byte-for-byte comparison with a running icecast2 is
tests/integration/test_playlists_icecast.py; these pin the rules one by one."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from fanout.protocol.playlists import (
    CONTENT_TYPES, M3U, XSPF, is_playlist_path, listen_url, playlist_request, render_m3u,
    render_playlist, render_xspf,
)
from fanout.protocol.stats import MountFigures, MountSettings, mount_stats, public_mount_stats
from fanout.protocol.text import from_wire

NS = {"x": "http://xspf.org/ns/0/"}
HOSTILE = '<script>alert("x")</script> & \'co\''


def stats_of(name: str = "/live.mp3", headers=(), title: str = "") -> dict[str, str]:
    figures = MountFigures(name=name, content_type="audio/mpeg", headers=headers,
                           source_ip="10.0.0.1", user_agent="enc/1", title=title,
                           stream_start=1_700_000_000.0, listeners=2, listener_peak=7,
                           slow_listeners=0, bytes_read=1, bytes_sent=1,
                           settings=MountSettings())
    return public_mount_stats(mount_stats(figures, "radio.example", 8000))


# --- which requests get a playlist ------------------------------------------------------------

def test_m3u_and_xspf_of_a_public_mount_are_found():
    assert playlist_request("/live.mp3.m3u", {"/live.mp3"}) == ("/live.mp3", M3U)
    assert playlist_request("/live.mp3.xspf", {"/live.mp3"}) == ("/live.mp3", XSPF)


def test_hidden_and_absent_mounts_get_no_playlist_alike():
    # The caller passes public mounts only: a hidden one is just not among them, so its
    # playlist is the same 404 as a mount that does not exist (Icecast answers both 200).
    for path in ("/hidden.m3u", "/nothing.m3u", "/hidden.xspf", "/nothing.xspf"):
        assert playlist_request(path, {"/live"}) is None


@pytest.mark.parametrize("path", ["/live", "/live.M3U", "/live.m3u8", "/live.vclt", "/.m3u",
                                  "/live.m3u/", "/live.xspf.m3u"])
def test_other_suffixes_and_spellings_are_no_playlist(path):
    assert playlist_request(path, {"/live"}) is None


@pytest.mark.parametrize("path, named", [("/a.m3u", True), ("/a.mp3.xspf", True),
                                          ("/a.m3u8", False), ("/a.M3U", False), ("/a", False)])
def test_a_path_is_routed_as_a_playlist_by_its_name_alone(path, named):
    assert is_playlist_path(path) is named


def test_a_mount_whose_name_ends_in_m3u_has_its_own_playlist():
    assert playlist_request("/list.m3u.m3u", {"/list.m3u"}) == ("/list.m3u", M3U)


# --- the URL in a playlist --------------------------------------------------------------------

@pytest.mark.parametrize("host, url", [
    (None, "http://radio.example:8000/live.mp3"),
    ("example.org:1234", "http://example.org:1234/live.mp3"),
    ("[::1]:8000", "http://[::1]:8000/live.mp3"),
    # fb2k and Winamp send Host without the port: Icecast then uses <hostname>:<port>.
    ("example.org", "http://radio.example:8000/live.mp3"),
    ("[::1]", "http://radio.example:8000/live.mp3"),
])
def test_listen_url_takes_a_host_with_a_port_else_the_configured_hostname(host, url):
    assert listen_url("/live.mp3", host, "radio.example", 8000) == url


@pytest.mark.parametrize("host", [
    "user:secret@evil.example:80", "evil.example:80/path", "evil.example:80?x", "a b:80",
    "<b>:80", "evil.example:80\\x", "evil.example:123456", "", ":80", "evil.example:",
])
def test_listen_url_never_takes_credentials_or_junk_from_host(host):
    assert listen_url("/live.mp3", host, "radio.example", 8000) == (
        "http://radio.example:8000/live.mp3")


def test_listen_url_of_a_forwarded_https_takes_a_portless_host():
    assert listen_url("/live", "radio.example", "internal", 8000, scheme="https") == (
        "https://radio.example/live")
    assert listen_url("/live", None, "internal", 8000, scheme="https") == (
        "https://internal:8000/live")


def test_listen_url_refuses_a_scheme_that_is_not_http():
    with pytest.raises(ValueError):
        listen_url("/live", None, "h", 1, scheme="javascript")


def test_listen_url_requests_the_mounts_exact_bytes():
    assert listen_url(from_wire(b"/\xff a#?.mp3"), None, "h", 1) == "http://h:1/%FF%20a%23%3F.mp3"


# --- .m3u --------------------------------------------------------------------------------------

def test_m3u_is_the_url_and_crlf_as_icecast_writes_it():
    assert render_m3u("http://radio.example:8000/live.mp3") == (
        b"http://radio.example:8000/live.mp3\r\n")


def test_m3u_content_type_is_icecasts():
    content_type, body = render_playlist(M3U, "http://h:1/a", stats_of())
    assert content_type == "audio/x-mpegurl" == CONTENT_TYPES[M3U]
    assert body.decode("utf-8").splitlines() == ["http://h:1/a"]


def test_m3u_has_no_credentials_and_one_line_whatever_the_mount():
    url = listen_url(from_wire(b"/a\r\nb\xff"), "u:p@x:1", "h", 1)
    body = render_m3u(url)
    assert body.count(b"\r\n") == 1 and body.endswith(b"\r\n") and b"@" not in body
    assert body == b"http://h:1/a%0D%0Ab%FF\r\n"


# --- .xspf -------------------------------------------------------------------------------------

ICECAST_XSPF = (  # what icecast2 2.4.4 answered for such a mount (see the interop test)
    '<?xml version="1.0" encoding="UTF-8"?>\n'
    '<playlist xmlns="http://xspf.org/ns/0/" version="1">\n'
    "  <title/>\n  <creator/>\n  <trackList>\n    <track>\n"
    "      <location>http://127.0.0.1:40959/live.mp3</location>\n"
    "      <title/>\n"
    "      <annotation>Stream Title: My &lt;Radio&gt; &amp; co\nStream Description: Desc\n"
    "Content Type:audio/mpeg\nBitrate: 128\nCurrent Listeners: 0\nPeak Listeners: 0\n"
    "Stream Genre: Rock</annotation>\n"
    "      <info>http://example.com/?a=1&amp;b=2</info>\n"
    "    </track>\n  </trackList>\n</playlist>\n").encode()


def test_xspf_is_icecasts_document_byte_for_byte():
    stats = {"bitrate": "128", "genre": "Rock", "listener_peak": "0", "listeners": "0",
             "listenurl": "http://127.0.0.1:40959/live.mp3", "server_description": "Desc",
             "server_name": "My <Radio> & co", "server_type": "audio/mpeg",
             "server_url": "http://example.com/?a=1&b=2", "stream_start": "x"}
    assert render_xspf([(stats["listenurl"], stats)]) == ICECAST_XSPF


def test_xspf_of_no_mount_is_icecasts_empty_playlist():
    assert render_xspf([]) == (b'<?xml version="1.0" encoding="UTF-8"?>\n'
                               b'<playlist xmlns="http://xspf.org/ns/0/" version="1">\n'
                               b"  <title/>\n  <creator/>\n  <trackList/>\n</playlist>\n")


def test_xspf_annotation_follows_the_stylesheets_lines():
    stats = {"server_name": "N", "server_type": "application/ogg", "quality": "0.4",
             "listeners": "1"}
    track = ET.fromstring(render_xspf([("http://h:1/a", stats)])).find("x:trackList/x:track", NS)
    # No description: xspf.xsl's "\nContent Type:" leaves an empty line after the title.
    assert track.findtext("x:annotation", namespaces=NS) == (
        "Stream Title: N\n\nContent Type:application/ogg\nQuality: 0.4\nCurrent Listeners: 1\n")


def test_xspf_artist_is_the_tracks_creator_and_title_its_title():
    stats = {"artist": "The <Band>", "title": "Song & co", "server_type": "application/ogg"}
    body = render_xspf([("http://h:1/v.ogg", stats)]).decode()
    assert ("      <location>http://h:1/v.ogg</location>\n"
            "      <creator>The &lt;Band&gt;</creator>\n"
            "      <title>Song &amp; co</title>\n") in body


def test_xspf_content_type_is_icecasts_and_it_parses():
    content_type, body = render_playlist(XSPF, "http://h:1/live.mp3", stats_of(title="T"))
    assert content_type == "application/xspf+xml; charset=UTF-8" == CONTENT_TYPES[XSPF]
    root = ET.fromstring(body)
    assert root.tag == "{http://xspf.org/ns/0/}playlist" and root.get("version") == "1"
    tracks = root.findall("x:trackList/x:track", NS)
    assert len(tracks) == 1
    assert tracks[0].findtext("x:location", namespaces=NS) == "http://h:1/live.mp3"
    assert tracks[0].findtext("x:title", namespaces=NS) == "T"
    assert "Peak Listeners: 7" in tracks[0].findtext("x:annotation", namespaces=NS)


def test_xspf_of_hostile_and_non_utf8_text_is_valid_xml_showing_it_as_text():
    stats = stats_of(from_wire(b"/\xff<x>"), [("ice-name", from_wire(b"caf\xe9")),
                                             ("ice-genre", HOSTILE),
                                             ("ice-description", "a\r\nb\x00c")], HOSTILE)
    body = render_xspf([(listen_url(from_wire(b"/\xff<x>"), None, "h", 1), stats)])
    body.decode("utf-8")  # strict
    track = ET.fromstring(body).find("x:trackList/x:track", NS)
    assert track.findtext("x:location", namespaces=NS) == "http://h:1/%FF%3Cx%3E"
    assert track.findtext("x:title", namespaces=NS) == HOSTILE
    annotation = track.findtext("x:annotation", namespaces=NS)
    lines = annotation.split("\n")
    assert lines[0] == "Stream Title: café"
    # A line break inside a value is shown as U+FFFD: it cannot add an annotation line.
    assert lines[1] == "Stream Description: a\ufffd\ufffdb\ufffdc"
    assert lines[-1] == f"Stream Genre: {HOSTILE}"


def test_xspf_never_carries_private_stats():
    body = render_xspf([("http://h:1/live.mp3", stats_of())]).decode()
    for private in ("10.0.0.1", "enc/1"):
        assert private not in body
