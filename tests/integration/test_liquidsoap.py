"""liquidsoap as the source: a chained Ogg stream, a new logical stream per track; MP3
with a title per track, over Icecast's protocol and as a Shoutcast DSP (issue 11).

liquidsoap (Debian's package) plays a looping playlist of short generated tracks into
fanout with `output.icecast(%vorbis)` / `%opus`; every track starts a new link (a BOS page
with a new serial number). A listener that joins after a track change must get the
header pages of the link its first data page belongs to, and one that was already
playing must pass each boundary (the new header pages are in the stream itself).
Captures are judged by ffprobe, which decodes every frame (-count_frames).

For MP3, liquidsoap sends each track's title to the admin interface (`/admin/metadata`
for `output.icecast`, `/admin.cgi` on the main port for `output.shoutcast`, whose audio
goes to the shoutcast-compat port, one above it); a listener that joins after a track
change must decode, and the stats must show the new track's title.

ffmpeg 5.1's Ogg demuxer cannot cross a chain boundary of Opus (nor FLAC) even in
liquidsoap's own file ("failed to create or replace stream"), so every capture is also
cut into its links, each decoded on its own, and checked to hold each link whole before the
next (a player's need at a boundary). Whole Vorbis captures were decoded too, until ffmpeg
failed one of liquidsoap's two-second links at random ("failed to create or replace
stream") while each of its links decoded from its own headers and none interleaved.
It also rejects the EOS page that ends each of liquidsoap's Opus links ("Packet
processing failed", in liquidsoap's own file too), so Opus links are probed without it.

One liquidsoap process (its start-up type-checks its library: seconds of CPU) feeds every
output for the whole module, each to its own mount: a test joins a running stream, which
is what each test asks of its listeners anyway (they join after a track change).
"""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.test_shoutcast_source import free_port_pair
from tests.support.admin import get
from tests.support.clients import Listener
from tests.support.server import SOURCE_PASSWORD, icecast_xml, start_fanout
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("liquidsoap") is None or shutil.which("ffprobe") is None,
    reason="liquidsoap or ffprobe not installed")

# The chained Ogg mount of each encoder.
CHAIN_MOUNTS = {"vorbis": "/chain.ogg", "opus": "/chain-opus.ogg"}
TRACKS = (330, 440, 550)  # Hz of the generated tracks, each its own title
TRACK_SECONDS = 2
JOINS = 6
# Bytes the first listener receives between two joins, so that the joins land at
# different points of at least two links: about 0.6 s of liquidsoap's Vorbis (~40 kbit/s
# for these tones) or Opus (~100 kbit/s).
JOIN_STAGGER = {"vorbis": 3000, "opus": 8000}
# What each joiner captures before it is judged: over a second of audio.
JOINER_BYTES = 12_000
LINKS_PASSED = 3  # track changes the first listener must have passed
SCRIPT = """
settings.init.allow_root.set(true)
settings.log.stdout.set(true)
settings.log.file.set(false)
s = playlist(mode="normal", reload_mode="never", "{playlist}")
{outputs}
"""
ICECAST_OUTPUT = ('output.icecast({encoder}, host="{host}", port={port}, password="{password}", '
                  'mount="{mount}", fallible=true, s)')
# libshout's ICY protocol: the audio goes to port + 1, the titles to port's /admin.cgi.
SHOUTCAST_OUTPUT = ('output.shoutcast({encoder}, host="{host}", port={port}, password="{password}", '
                    'fallible=true, s)')
SHOUTCAST_MOUNT = "/sc.mp3"  # the <shoutcast-mount> of the main listen socket
MP3_ICECAST_MOUNT = "/liq.mp3"
OUTPUTS = (  # (output, encoder, mount): every one of them fed by the module's liquidsoap
    (ICECAST_OUTPUT, "%vorbis", CHAIN_MOUNTS["vorbis"]),
    (ICECAST_OUTPUT, "%opus", CHAIN_MOUNTS["opus"]),
    (ICECAST_OUTPUT, "%mp3", MP3_ICECAST_MOUNT),
    (SHOUTCAST_OUTPUT, "%mp3", SHOUTCAST_MOUNT),
)
MP3_JOINER_BYTES = 48_000  # 3 s of liquidsoap's 128 kbit/s MP3
# Seconds liquidsoap may take to start serving: its start-up type-checks its library, ~6 s
# of CPU, which took over 60 s on a 2-core machine at load 20 (a wait: it ends when served).
LIQUIDSOAP_START = 180


@dataclass(frozen=True)
class Page:
    bos: bool
    eos: bool
    granule: int
    serial: int
    data: bytes


def whole_pages(capture: bytes) -> list[Page]:
    """The pages of `capture` up to its last whole one; AssertionError unless they are
    back to back from its first byte."""
    pages, pos = [], 0
    while pos + 27 <= len(capture):
        assert capture[pos:pos + 4] == b"OggS", f"no Ogg page at byte {pos}"
        flags = capture[pos + 5]
        granule, serial = struct.unpack_from("<qI", capture, pos + 6)
        nsegs = capture[pos + 26]
        if pos + 27 + nsegs > len(capture):
            break
        end = pos + 27 + nsegs + sum(capture[pos + 27:pos + 27 + nsegs])
        if end > len(capture):
            break
        pages.append(Page(bool(flags & 2), bool(flags & 4), granule, serial, capture[pos:end]))
        pos = end
    return pages


def links(pages: list[Page]) -> list[list[Page]]:
    """The pages cut into links: a BOS page after a data page starts the next one."""
    out: list[list[Page]] = []
    seen_data = True
    for page in pages:
        if page.bos and seen_data:
            out.append([])
            seen_data = False
        assert out, "the capture does not start with a BOS page"
        out[-1].append(page)
        seen_data = seen_data or page.granule not in (0, -1)
    return out


def probe(data: bytes, path: Path) -> tuple[int, str]:
    """(frames ffprobe decoded, what it said at level error) for `data`, kept at `path`."""
    path.write_bytes(data)
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=nb_read_frames",
         "-of", "default=noprint_wrappers=1:nokey=1", str(path)],
        capture_output=True, text=True, check=False)
    frames = sum(int(v) for v in result.stdout.split() if v.isdigit())
    return frames, result.stderr.strip()


def assert_link_decodes_from_its_own_headers(link: list[Page], codec: str, path: Path) -> None:
    headers = [page for page in link if page.granule in (0, -1)]
    first_data = next(page for page in link if page.granule not in (0, -1))
    assert link[0].bos and first_data.serial == link[0].serial, (
        f"header pages of serial {link[0].serial:#x}, first data page of {first_data.serial:#x}")
    assert {page.serial for page in headers} == {link[0].serial}
    probed = [page for page in link if not (codec == "opus" and page.eos)]
    frames, errors = probe(b"".join(page.data for page in probed), path)
    assert errors == "" and frames > 0, f"{path.name}: {frames} frames, {errors}"


@pytest.fixture(scope="module")
def tracks(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tracks")
    for freq in TRACKS:
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                        f"sine=f={freq}:d={TRACK_SECONDS}", "-metadata", f"title=tone {freq}",
                        "-c:a", "libvorbis", str(folder / f"{freq}.ogg")], check=True)
    playlist = folder / "playlist.m3u"
    playlist.write_text("".join(f"{folder / f'{freq}.ogg'}\n" for freq in TRACKS))
    return playlist


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # the main port and, one above it, the shoutcast-compat port a Shoutcast DSP feeds
    config = icecast_xml(port=free_port_pair()).replace(
        "</listen-socket>", f"<shoutcast-mount>{SHOUTCAST_MOUNT}</shoutcast-mount></listen-socket>", 1)
    srv = start_fanout(config, tmp_path_factory.mktemp("fanout"), workers=2)
    yield srv
    assert srv.stop() == 0, srv.output()


@pytest.fixture(scope="module")
def liquidsoap(server, tracks, tmp_path_factory) -> Iterator[Path]:
    """One liquidsoap playing the tracks into every mount of OUTPUTS; yields its folder
    (where its log is)."""
    folder = tmp_path_factory.mktemp("liquidsoap")
    script = folder / "source.liq"
    script.write_text(SCRIPT.format(playlist=tracks, outputs="\n".join(
        output.format(encoder=encoder, host=server.host, port=server.port,
                      password=SOURCE_PASSWORD, mount=mount)
        for output, encoder, mount in OUTPUTS)))
    with (folder / "liquidsoap.log").open("wb") as log:
        process = subprocess.Popen(["liquidsoap", str(script)], stdout=log, stderr=subprocess.STDOUT)
    try:
        yield folder
    finally:
        process.terminate()
        process.wait(10)


def serves(server, mount: str) -> bool:
    probe_listener = Listener(server.host, server.port, mount).start()
    probe_listener.close()
    return probe_listener.head.startswith(b"HTTP/1.0 200")


def wait_for_stream(server, folder: Path, mount: str) -> None:
    """Wait until liquidsoap's stream on `mount` is served; if it never is, fail with
    what liquidsoap and fanout said (a start-up on a loaded machine takes seconds)."""
    try:
        wait_for(lambda: serves(server, mount), LIQUIDSOAP_START, f"liquidsoap's stream on {mount}")
    except AssertionError as timed_out:
        said = (folder / "liquidsoap.log").read_text(errors="replace").splitlines()[-30:]
        raise AssertionError("\n".join([str(timed_out), *said, *server.lines[-30:]])) from None


def link_count(listener: Listener) -> int:
    return len(links(whole_pages(bytes(listener.body))))


@pytest.mark.parametrize("codec", ["vorbis", "opus"])
def test_listeners_joining_after_track_changes_and_before_them_decode(
        server, liquidsoap, tmp_path, codec):
    mount = CHAIN_MOUNTS[codec]
    wait_for_stream(server, liquidsoap, mount)
    early = Listener(server.host, server.port, mount).start()
    joiners: list[Listener] = []
    try:
        wait_for(lambda: link_count(early) >= 3, 20, "a track change after liquidsoap's first")
        for _ in range(JOINS):
            mark = len(early.body)
            wait_for(lambda: len(early.body) >= mark + JOIN_STAGGER[codec], 10, "more of the stream")
            joiners.append(Listener(server.host, server.port, mount).start())
        for joiner in joiners:
            wait_for(lambda: len(joiner.body) >= JOINER_BYTES, 20, "a joiner's capture")
        wait_for(lambda: link_count(early) >= 3 + LINKS_PASSED, 20, "more track changes")
        assert not early.closed.is_set() and not any(j.closed.is_set() for j in joiners)
    finally:
        for listener in [early, *joiners]:
            listener.close()

    captures = [bytes(listener.body) for listener in [early, *joiners]]
    for number, capture in enumerate(captures):
        pages = whole_pages(capture)
        for index, link in enumerate(links(pages)):
            if any(page.granule not in (0, -1) for page in link):
                assert_link_decodes_from_its_own_headers(
                    link, codec, tmp_path / f"listener{number}-link{index}.{codec}.ogg")
        # What a player needs across boundaries: each link whole before the next begins,
        # never a page of an earlier link after a later one's first page.
        serials = [page.serial for page in pages]
        order = list(dict.fromkeys(serials))
        assert serials == sorted(serials, key=order.index), f"listener {number}: links interleaved"
    assert len(links(whole_pages(captures[0]))) >= 3 + LINKS_PASSED
    # The joiners started in different links: they did not all land on one boundary.
    assert len({whole_pages(c)[0].serial for c in captures[1:]}) >= 2


def stats_title(server, mount: str) -> str | None:
    """The mount's title in /status-json.xsl (None while it has none)."""
    sources = json.loads(get(server, "/status-json.xsl", None).body)["icestats"].get("source", [])
    for source in sources if isinstance(sources, list) else [sources]:
        if source["listenurl"].endswith(mount):
            return source.get("title")
    return None


@pytest.mark.parametrize("mount", [MP3_ICECAST_MOUNT, SHOUTCAST_MOUNT],
                         ids=["output.icecast", "output.shoutcast"])
def test_mp3_listener_joining_after_a_track_change_decodes_and_the_title_follows(
        server, liquidsoap, tmp_path, mount):
    titles = [f"tone {freq}" for freq in TRACKS]
    wait_for_stream(server, liquidsoap, mount)
    first = wait_for(lambda: stats_title(server, mount), 20, "the first track's title")
    assert first in titles
    changed = wait_for(lambda: (title := stats_title(server, mount)) != first and title, 20,
                       "a track change")
    assert changed == titles[(titles.index(first) + 1) % len(titles)]
    joiner = Listener(server.host, server.port, mount).start()
    try:
        wait_for(lambda: len(joiner.body) >= MP3_JOINER_BYTES, 20, "the joiner's capture")
    finally:
        joiner.close()
    assert joiner.header("Content-Type") == "audio/mpeg"
    frames, errors = probe(bytes(joiner.body), tmp_path / "joiner.mp3")
    assert errors == "" and frames > 0, f"{frames} frames, {errors}"
