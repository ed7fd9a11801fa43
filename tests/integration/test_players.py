"""Real clients from Debian (issue 11): ezstream (libshout) as a source, and mpv playing
every mount for PLAY_SECONDS without a decoder error.

ezstream loops a short file, so its Ogg stream starts the same logical stream again
(a BOS page with the same serial) every FILE_SECONDS: mpv must play across those joins.
ffmpeg sources cover every format (MP3, AAC, Vorbis, Opus). mpv plays to the null audio
output, in real time, as a listener's player does; its playback position (the status
line) says how much it played, so a stream that ended early or stalled fails the test.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.clients import Listener
from tests.support.media import FfmpegSource, decode, needs_ffmpeg
from tests.support.server import SOURCE_PASSWORD, icecast_xml, start_fanout
from tests.support.waiting import wait_for

pytestmark = [
    needs_ffmpeg,
    pytest.mark.skipif(shutil.which("ezstream") is None or shutil.which("mpv") is None,
                       reason="ezstream or mpv not installed (apt: ezstream mpv)"),
]

# Seconds of audio mpv must play from each mount (issue 11: 10 s).
PLAY_SECONDS = 10
# Length of the files ezstream loops: shorter than PLAY_SECONDS, so mpv crosses a loop.
FILE_SECONDS = 4
# mpv stops at PLAY_SECONDS; its last status line comes a fraction of a second before.
POSITION_SLACK = 1.0
FFMPEG_MOUNTS = {"/ff.mp3": ("mp3", "audio/mpeg"), "/ff.aac": ("aac", "audio/aac"),
                 "/ff.ogg": ("vorbis", "application/ogg"), "/ff.opus": ("opus", "audio/ogg")}
EZSTREAM_MOUNTS = {"/ez.mp3": ("MP3", "t.mp3", ("-c:a", "libmp3lame", "-b:a", "128k")),
                   "/ez.ogg": ("OGG", "t.ogg", ("-c:a", "libvorbis", "-b:a", "128k"))}
EZSTREAM_XML = """<ezstream>
  <servers><server><protocol>HTTP</protocol><hostname>{host}</hostname><port>{port}</port>
    <user>source</user><password>{password}</password></server></servers>
  <streams><stream><mountpoint>{mount}</mountpoint><format>{format}</format>
    <stream_name>ezstream {format}</stream_name></stream></streams>
  <intakes><intake><type>file</type><filename>{file}</filename>
    <stream_once>no</stream_once></intake></intakes>
</ezstream>
"""
POSITION = re.compile(r"T=([0-9.]+)")


def serves(server, mount: str) -> bool:
    probe = Listener(server.host, server.port, mount).start()
    probe.close()
    return probe.head.startswith(b"HTTP/1.0 200")


def start_ezstream(server, folder: Path, mount: str, fmt: str, name: str,
                   codec: tuple[str, ...]) -> subprocess.Popen[bytes]:
    media = folder / name
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"sine=f=330:d={FILE_SECONDS}",
                    *codec, str(media)], check=True)
    config = folder / f"{name}.xml"
    config.write_text(EZSTREAM_XML.format(host=server.host, port=server.port,
                                          password=SOURCE_PASSWORD, mount=mount, format=fmt,
                                          file=media))
    os.chmod(config, 0o600)  # ezstream refuses a config others may read (it holds a password)
    log = (folder / f"{name}.log").open("wb")
    return subprocess.Popen(["ezstream", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("players")
    srv = start_fanout(icecast_xml(sources=8), folder, workers=2)
    running: list = []
    try:
        running += [FfmpegSource(srv, mount, codec, content_type)
                    for mount, (codec, content_type) in FFMPEG_MOUNTS.items()]
        running += [start_ezstream(srv, folder, mount, *spec) for mount, spec in EZSTREAM_MOUNTS.items()]
        for mount in [*FFMPEG_MOUNTS, *EZSTREAM_MOUNTS]:
            wait_for(lambda: serves(srv, mount), 30, f"{mount} to serve")
        yield srv
    finally:
        for thing in running:
            if isinstance(thing, FfmpegSource):
                thing.stop()
            else:
                thing.terminate()
                thing.wait(10)
        assert srv.stop() == 0, srv.output()


@pytest.mark.parametrize("mount", list(EZSTREAM_MOUNTS))
def test_ezstream_source_decodes_across_its_loops(server, mount, tmp_path):
    listener = Listener(server.host, server.port, mount).start()
    # More than one file's worth: the capture crosses a loop of ezstream's playlist.
    wait_for(lambda: len(listener.body) >= 128_000 // 8 * (FILE_SECONDS + 2), 30,
             "a capture longer than the looped file")
    listener.close()
    decoded = decode(bytes(listener.body), tmp_path / mount.strip("/"))
    assert decoded.errors == ""
    assert decoded.seconds >= FILE_SECONDS + 1


def test_mpv_plays_every_mount_without_a_decoder_error(server, tmp_path):
    """Every mount at once, each in its own mpv: 10 s of playback, nothing at error level."""
    players = {}
    for mount in [*FFMPEG_MOUNTS, *EZSTREAM_MOUNTS]:
        errors = (tmp_path / f"{mount.strip('/')}.err").open("wb")
        players[mount] = (subprocess.Popen(
            ["mpv", "--no-config", "--ytdl=no", "--no-video", "--ao=null",
             f"--length={PLAY_SECONDS}", "--msg-level=all=error,statusline=status",
             "--term-status-msg=T=${=playback-time}", f"http://{server.host}:{server.port}{mount}"],
            stdout=subprocess.DEVNULL, stderr=errors), errors.name)
    for mount, (player, errors_path) in players.items():
        assert player.wait(PLAY_SECONDS * 6) == 0, mount
        said = Path(errors_path).read_text(errors="replace").replace("\r", "\n")
        positions = [float(p) for p in POSITION.findall(said)]
        problems = [line for line in said.splitlines() if line.strip() and "T=" not in line]
        assert problems == [], (mount, problems)
        assert positions and positions[-1] >= PLAY_SECONDS - POSITION_SLACK, (mount, positions[-3:])
