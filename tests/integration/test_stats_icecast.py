"""/status-json.xsl and /admin/stats next to a real Icecast 2.4.4 given the same sources.

Both servers get the same five sources from real encoders: ffmpeg streaming MP3 (with
ice-* metadata), AAC, Vorbis and Opus (each Ogg one with TITLE/ARTIST comments), and
liquidsoap streaming a chained Vorbis stream (a new link per track, each with its own
title, and ice-audio-info with a quality). Each mount gets one listener on each server.
Then the answers are compared: the same keys in the same order, the same JSON types, the
same values wherever a value does not depend on when or where each server runs. The
counters of /admin/stats are compared as running totals over the same requests.

Where fanout differs on purpose there is a test of its own below, with the reason.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from fanout import __version__
from fanout.protocol.identity import default_server_id
from tests.support.admin import get
from tests.support.clients import Listener
from tests.support.icecast import needs_icecast2, start_icecast2
from tests.support.media import FfmpegSource, needs_ffmpeg
from tests.support.server import SOURCE_PASSWORD, icecast_xml, start_fanout
from tests.support.waiting import wait_for

pytestmark = [
    needs_icecast2, needs_ffmpeg, pytest.mark.interop,
    pytest.mark.skipif(shutil.which("liquidsoap") is None, reason="liquidsoap not installed"),
]

MP3_ICE = {"ice_name": "Morning <Show>", "ice_description": "News & music",
           "ice_genre": "Talk", "ice_url": "http://radio.example/"}
TAGS = {"title": "Tone & co", "artist": "The Sines"}
# mount -> (codec, content type, ffmpeg's ice options, stream comments)
FFMPEG_SOURCES = {
    "/a.mp3": ("mp3", "audio/mpeg", MP3_ICE, None),
    "/b.aac": ("aac", "audio/aac", None, None),
    "/c.ogg": ("vorbis", "application/ogg", None, TAGS),
    "/d.opus": ("opus", "audio/ogg", None, TAGS),
}
CHAIN = "/e.ogg"
OPUS = "/d.opus"
TRACKS = {330: "tone 330", 440: "tone 440"}  # Hz -> title of liquidsoap's chained links
ARTIST = "Sine Band"
MOUNTS = sorted([*FFMPEG_SOURCES, CHAIN])
# Values that depend on when or where a server runs (the listen URL's port), or on how
# much it read so far.
VARYING = {"server_start", "server_start_iso8601", "stream_start", "stream_start_iso8601",
           "listenurl", "total_bytes_read", "total_bytes_sent"}
# Running totals that count the test's own polls (compared as differences below).
RUNNING_TOTALS = {"connections", "client_connections", "listener_connections"}
# What each side differs in on purpose (each has its test below): fanout names itself in
# server_id; it shows an Opus link's comments, which 2.4.4 leaves out.
OURS_ONLY = {OPUS: {"title", "artist"}}
LIQUIDSOAP = """
settings.init.allow_root.set(true)
settings.log.stdout.set(true)
settings.log.file.set(false)
s = playlist(mode="normal", reload_mode="never", "{playlist}")
output.icecast(%vorbis, host="{host}", port={ice_port}, password="{password}",
               mount="{mount}", fallible=true, s)
output.icecast(%vorbis, host="{host}", port={our_port}, password="{password}",
               mount="{mount}", fallible=true, s)
"""


def track_playlist(folder: Path) -> Path:
    for freq, title in TRACKS.items():
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"sine=f={freq}:d=2",
                        "-metadata", f"title={title}", "-metadata", f"artist={ARTIST}",
                        "-c:a", "libvorbis", str(folder / f"{freq}.ogg")], check=True)
    playlist = folder / "playlist.m3u"
    playlist.write_text("".join(f"{folder / f'{freq}.ogg'}\n" for freq in TRACKS))
    return playlist


def status(server) -> dict:
    answer = get(server, "/status-json.xsl", authorization=None)
    assert answer.status == 200, answer
    return json.loads(answer.body)["icestats"]


def sources_of(icestats: dict) -> dict[str, dict]:
    found = icestats.get("source", [])
    return {urlsplit(s["listenurl"]).path: s for s in (found if isinstance(found, list) else [found])}


def admin_stats(server) -> ET.Element:
    answer = get(server, "/admin/stats")
    assert answer.status == 200, answer
    return answer.xml()


def mount_elements(root: ET.Element) -> dict[str, list[tuple[str, str]]]:
    return {source.get("mount"): [(child.tag, child.text or "") for child in source]
            for source in root.iter("source")}


def settled(server) -> bool:
    """Every mount is listed with what its stream says (an Ogg link's subtype, the
    chained stream's title) and has its one listener."""
    mounts = sources_of(status(server))
    if sorted(mounts) != MOUNTS or any(m.get("listeners") != 1 for m in mounts.values()):
        return False
    if not all("subtype" in mounts[m] for m in ("/c.ogg", OPUS, CHAIN)) or "title" not in mounts[CHAIN]:
        return False
    # 2.4.4 updates its global listener count apart from the mounts' (when its stats
    # thread gets round to it): wait for that too.
    totals = {child.tag: child.text for child in admin_stats(server) if child.tag != "source"}
    return totals.get("listeners") == str(len(MOUNTS))


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stats-icecast")
    icecast = start_icecast2()
    ours = start_fanout(icecast_xml(sources=8), folder, workers=2)
    running: list = []
    try:
        for mount, (codec, content_type, ice, tags) in FFMPEG_SOURCES.items():
            running += [FfmpegSource(server, mount, codec, content_type, ice, tags)
                        for server in (icecast, ours)]
        script = folder / "chain.liq"
        script.write_text(LIQUIDSOAP.format(playlist=track_playlist(folder), host="127.0.0.1",
                                            ice_port=icecast.port, our_port=ours.port,
                                            password=SOURCE_PASSWORD, mount=CHAIN))
        log = (folder / "liquidsoap.log").open("wb")
        liquidsoap = subprocess.Popen(["liquidsoap", str(script)], stdout=log,
                                      stderr=subprocess.STDOUT)
        for server in (icecast, ours):
            # liquidsoap and six ffmpeg encoders start at once: give a loaded machine time.
            wait_for(lambda: sorted(sources_of(status(server))) == MOUNTS, 90,
                     f"every mount on {server.host}:{server.port}")
            running += [Listener(server.host, server.port, mount).start() for mount in MOUNTS]
        for server in (icecast, ours):
            wait_for(lambda: settled(server), 20, "every mount's stream info and listener")
        yield icecast, ours
    finally:
        for thing in running:
            getattr(thing, "stop", getattr(thing, "close", None))()
        if "liquidsoap" in locals():
            liquidsoap.terminate()
            liquidsoap.wait(10)
        icecast.stop()
        assert ours.stop() == 0, ours.output()


def without_ours_only(mount: str, keys: list[str]) -> list[str]:
    return [key for key in keys if key not in OURS_ONLY.get(mount, ())]


def assert_same_value(key: str, mount: str, theirs: object, ours: object) -> None:
    assert type(ours) is type(theirs), (mount, key, theirs, ours)
    if key == "title" and mount == CHAIN:  # which track plays now depends on the moment
        assert {theirs, ours} <= set(TRACKS.values()), (theirs, ours)
    elif key not in VARYING:
        assert ours == theirs, (mount, key)


def test_status_json_has_icecasts_keys_types_and_values(servers):
    icecast, ours = servers
    theirs, mine = status(icecast), status(ours)
    assert list(mine) == list(theirs)
    for key in theirs:
        if key not in ("source", "server_id"):
            assert_same_value(key, "", theirs[key], mine[key])
    their_mounts, our_mounts = sources_of(theirs), sources_of(mine)
    assert list(our_mounts) == list(their_mounts) == MOUNTS
    for mount, their_source in their_mounts.items():
        our_source = our_mounts[mount]
        assert without_ours_only(mount, list(our_source)) == list(their_source), mount
        for key, value in their_source.items():
            assert_same_value(key, mount, value, our_source[key])


def test_admin_stats_has_icecasts_elements_and_values(servers):
    icecast, ours = servers
    theirs, mine = admin_stats(icecast), admin_stats(ours)
    their_global = [(c.tag, c.text or "") for c in theirs if c.tag != "source"]
    our_global = [(c.tag, c.text or "") for c in mine if c.tag != "source"]
    assert [k for k, _ in our_global] == [k for k, _ in their_global]
    counts = {"listeners": str(len(MOUNTS)), "sources": str(len(MOUNTS)),
              "source_client_connections": str(len(MOUNTS)),
              "source_total_connections": str(len(MOUNTS)), "source_relay_connections": "0",
              "file_connections": "0", "stats": "0", "stats_connections": "0"}
    for (key, their_value), (_, our_value) in zip(their_global, our_global):
        if key in counts:
            assert our_value == their_value == counts[key], key
        elif key not in VARYING | RUNNING_TOTALS | {"server_id", "clients"}:
            assert our_value == their_value, key
    # Every source and listener; 2.4.4 may still count a status request it answered a
    # moment ago (its count is updated as it gets round to it), never fewer.
    clients = dict(our_global)["clients"]
    assert int(clients) == 2 * len(MOUNTS) <= int(dict(their_global)["clients"])
    their_mounts, our_mounts = mount_elements(theirs), mount_elements(mine)
    assert list(our_mounts) == list(their_mounts) == MOUNTS
    for mount, their_children in their_mounts.items():
        ours_shown = [(k, v) for k, v in our_mounts[mount] if k not in OURS_ONLY.get(mount, ())]
        assert [k for k, _ in ours_shown] == [k for k, _ in their_children], mount
        for (key, their_value), (_, our_value) in zip(their_children, ours_shown):
            assert_same_value(key, mount, their_value, our_value)


def running_totals(server) -> dict[str, int]:
    root = admin_stats(server)
    return {key: int(root.findtext(key) or "") for key in (*RUNNING_TOTALS,
                                                           "source_client_connections")}


@pytest.mark.parametrize("side", ["icecast", "fanout"])
def test_connection_counts_are_running_totals_of_what_icecast_counts(servers, side):
    """A listener that comes and goes, a status request and a 404 count the same on both
    servers: each is a connection and a client connection, the listener a listener
    connection even after it left; and each /admin/stats read counts itself."""
    server = servers[0] if side == "icecast" else servers[1]
    before = running_totals(server)
    listener = Listener(server.host, server.port, "/a.mp3").start()
    assert listener.head.startswith(b"HTTP/1.0 200")
    listener.close()
    assert get(server, "/status-json.xsl", authorization=None).status == 200
    assert get(server, "/no-such-mount", authorization=None).status == 404
    reads = 0

    def counted() -> bool:  # 2.4.4 files its counts a moment later: look until it did
        nonlocal reads
        reads += 1
        now = running_totals(server)
        return {key: now[key] - before[key] for key in now} == {
            "connections": 3 + reads, "client_connections": 3 + reads,
            "listener_connections": 1, "source_client_connections": 0}
    wait_for(counted, 5, "the three requests counted")


def titles_seen(server, rounds: int) -> list[str]:
    """The chained stream's titles in /status-json.xsl as they change, `rounds` of them."""
    seen = [sources_of(status(server))[CHAIN]["title"]]

    def next_title() -> bool:
        title = sources_of(status(server))[CHAIN]["title"]
        if title != seen[-1]:
            seen.append(title)
        return len(seen) > rounds
    wait_for(next_title, 4 * rounds * 2, "the next track's title")
    return seen


def test_each_chained_links_title_replaces_the_last(servers):
    _, ours = servers
    seen = titles_seen(ours, 2)
    assert set(seen) <= set(TRACKS.values()) and seen[0] != seen[1] != seen[2]
    shown = dict(mount_elements(admin_stats(ours))[CHAIN])
    assert shown["title"] in TRACKS.values() and shown["artist"] == ARTIST


def test_no_server_puts_icy_metadata_into_an_ogg_stream(servers):
    """An Ogg mount's title lives in its comment headers; 2.4.4 adds no ICY blocks to it
    even for a listener that asks (and has no MP3 made of an Ogg stream to add them to)."""
    for server in servers:
        listener = Listener(server.host, server.port, "/c.ogg", icy=True).start()
        listener.close()
        assert listener.head.startswith(b"HTTP/1.0 200 OK")
        assert listener.header("icy-metaint") is None


# --- differences we keep on purpose ------------------------------------------------------


def test_server_id_names_fanout_after_icecasts_words(servers):
    """fanout says what it is, in words that still say "Icecast 2.4.4" first: clients and
    directories that look for Icecast find it (protocol/identity.py). An operator whose
    client wants the exact string sets <server-id>."""
    icecast, ours = servers
    theirs, mine = status(icecast)["server_id"], status(ours)["server_id"]
    assert (theirs, mine) == ("Icecast 2.4.4", default_server_id(__version__))
    assert mine.startswith(theirs)
    assert get(ours, "/status-json.xsl", authorization=None).headers["server"] == mine


def test_an_opus_links_title_and_artist_show_where_icecast_shows_none(servers):
    """2.4.4 reads the comments of Vorbis links only; an Opus (or FLAC) stream's title is
    just as much what plays now, so fanout shows it as it shows a Vorbis one."""
    icecast, ours = servers
    theirs, mine = sources_of(status(icecast))[OPUS], sources_of(status(ours))[OPUS]
    assert "title" not in theirs and "artist" not in theirs
    assert (mine["title"], mine["artist"]) == (TAGS["title"], TAGS["artist"])
