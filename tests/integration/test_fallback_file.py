"""Fallback to a webroot file (PROTOCOL.md §3.9, issue 11): `<fallback-mount>/x.mp3`.

A listener whose mount has no source, or whose source leaves, is served the file from
`<paths><webroot>` in a loop, paced in real time; with `<fallback-override>` it goes back
to the live source when that returns. The MP3 file is made by ffmpeg here (noise: no two
of its frames alike, so where a listener is in the loop is never ambiguous), and so are the
Ogg Vorbis and Opus ones. Each test uses a file of its own name, so each starts that file
afresh in whichever worker serves it.
"""
from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from fanout.model.intro import id3v2_length
from fanout.model.ogg import OggPageScanner
from fanout.worker.files import NOT_FOUND
from tests.integration.test_fallback import mount_xml
from tests.support.clients import Listener, PacedSource, pattern_tail, raw_request, status_and_body
from tests.support.media import FfmpegSource, decode
from tests.support.server import FanoutProcess, icecast_xml, start_fanout
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")

SECONDS = 2  # the file's length: a listener loops over it within a few seconds
BYTE_RATE = 8000  # 64 kbit/s, the file's bitrate
FILES = ("paced", "shared", "kept", "back", "ogg")  # /<name>.mp3 in the webroot, one per test
# /<name> in the webroot, one per test: (its codec's ffmpeg options)
OGG_FILES = {
    "vorbis-file.ogg": ("-c:a", "libvorbis", "-q:a", "0"),
    "opus-file.opus": ("-c:a", "libopus", "-b:a", "32k"),
    "moved-file.ogg": ("-c:a", "libvorbis", "-q:a", "0"),
    "flac-file.ogg": ("-c:a", "flac"),
}
MOUNTS = (
    mount_xml("/nosource", fallback_mount="/paced.mp3")
    + mount_xml("/crowd", fallback_mount="/shared.mp3")
    + mount_xml("/live", fallback_mount="/kept.mp3")
    + mount_xml("/back", fallback_mount="/back.mp3", fallback_override="1")
    + mount_xml("/ogg", fallback_mount="/ogg.mp3")
    + mount_xml("/lost", fallback_mount="/missing.mp3")
    + mount_xml("/vorbis.ogg", fallback_mount="/vorbis-file.ogg")
    + mount_xml("/opus.ogg", fallback_mount="/opus-file.opus")
    + mount_xml("/moved.ogg", fallback_mount="/moved-file.ogg")
    + mount_xml("/flac.ogg", fallback_mount="/flac-file.ogg")
    + mount_xml("/silent.ogg", fallback_mount="/headers-only.ogg")
)


def make_mp3(path: Path) -> bytes:
    command = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
               f"anoisesrc=d={SECONDS}:c=pink:r=44100:a=0.5:seed=7", "-ac", "1",
               "-c:a", "libmp3lame", "-b:a", f"{BYTE_RATE * 8 // 1000}k", "-f", "mp3", str(path)]
    subprocess.run(command, check=True, capture_output=True)
    return path.read_bytes()


def make_ogg(path: Path, codec: tuple[str, ...]) -> bytes:
    command = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
               f"anoisesrc=d={SECONDS}:c=pink:r=44100:a=0.5:seed=7", "-ac", "1", *codec,
               "-f", "ogg", str(path)]
    subprocess.run(command, check=True, capture_output=True)
    return path.read_bytes()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    webroot = tmp_path_factory.mktemp("webroot")
    audio = make_mp3(webroot / f"{FILES[0]}.mp3")
    for name in FILES[1:]:
        (webroot / f"{name}.mp3").write_bytes(audio)
    for name, codec in OGG_FILES.items():
        OGG_AUDIO[name] = make_ogg(webroot / name, codec)
    vorbis = OGG_AUDIO["vorbis-file.ogg"]
    OGG_AUDIO["headers-only.ogg"] = b"".join(page.data for page in OggPageScanner().feed(vorbis)
                                             if page.granule == 0)
    (webroot / "headers-only.ogg").write_bytes(OGG_AUDIO["headers-only.ogg"])
    config = icecast_xml(mounts=MOUNTS, extra=f"<paths><webroot>{webroot}</webroot></paths>",
                         source_timeout=30)
    server = start_fanout(config, tmp_path_factory.mktemp("fanout"))
    try:
        yield server, audio
    finally:
        server.stop()


def loop_offset(data: bytes, audio: bytes) -> int | None:
    """Where in the file `data` starts if it is exactly the file played in a loop from
    there (as long as it is), else None."""
    if len(data) < 4096:
        return None
    twice = audio + audio
    at = twice.find(data[:4096])
    while 0 <= at < len(audio):
        repeats = (at + len(data)) // len(audio) + 1
        if (audio * (repeats + 1))[at:at + len(data)] == data:
            return at
        at = twice.find(data[:4096], at + 1)
    return None


def content_type_of(server: FanoutProcess, mount: str) -> str | None:
    """The Content-Type a new listener of `mount` is answered with (the probe is closed)."""
    probe = Listener(server.host, server.port, mount).start()
    probe.close()
    return probe.header("content-type")


def file_tail(listener: Listener, audio: bytes, amount: int = 8192) -> bool:
    """Whether the last `amount` bytes received are the file played in a loop."""
    tail = bytes(listener.body[-amount:])
    return len(tail) == amount and loop_offset(tail, audio) is not None


def test_a_mount_without_source_plays_its_fallback_file_looped_in_real_time(served):
    server, audio = served
    started = time.monotonic()
    listener = Listener(server.host, server.port, "/nosource").start()
    try:
        assert listener.head.startswith(b"HTTP/1.0 200 OK"), listener.head
        assert listener.header("content-type") == "audio/mpeg"
        # Once round the loop and a bit: the seam must be byte-exact too.
        wait_for(lambda: len(listener.body) >= len(audio) + 8192, 10 * SECONDS,
                 "the file and the start of its next loop")
        elapsed = time.monotonic() - started
        body = bytes(listener.body)
        assert loop_offset(body, audio) is not None, "not the file's bytes in a loop"
        # Paced: never more than real time allows (and then some), where an unpaced file
        # would have come round many times by now. An upper bound only: load slows it.
        assert len(body) <= 2 * BYTE_RATE * elapsed + len(audio), (len(body), elapsed)
        assert not listener.closed.is_set()
    finally:
        listener.close()
    # Its last listener gone, the worker stops playing the file and frees its ring.
    wait_for(lambda: "fallback file /paced.mp3: stopped" in server.output(), 10,
             "the file mount to stop")


def test_listeners_of_one_worker_share_one_playing_of_the_file(served):
    server, audio = served
    workers = len(server.workers())
    crowd = [Listener(server.host, server.port, "/crowd").start() for _ in range(3 * workers)]
    try:
        for listener in crowd:
            wait_for(lambda: file_tail(listener, audio), 10, "the fallback file")
        # Started once per worker that serves some of them, not once per listener.
        assert 1 <= server.output().count("fallback file /shared.mp3: playing it here") <= workers
    finally:
        for listener in crowd:
            listener.close()


def test_a_listener_stays_connected_onto_the_file_when_the_source_leaves(served):
    server, audio = served
    source = PacedSource(server, "/live", content_type="audio/mpeg")
    listener = Listener(server.host, server.port, "/live").start()
    try:
        wait_for(lambda: pattern_tail(listener), 10, "the live source's stream")
        source.close()
        wait_for(lambda: file_tail(listener, audio), 10, "the fallback file on the same connection")
        assert not listener.closed.is_set()
        wait_for(lambda: "passing 1 listeners of /live to fallback file /kept.mp3"
                 in server.output(), 10, "the move's log line")
    finally:
        listener.close()
        source.close()


def test_fallback_override_brings_file_listeners_back_to_the_live_source(served):
    server, audio = served
    first = PacedSource(server, "/back", content_type="audio/mpeg")
    listener = Listener(server.host, server.port, "/back").start()
    try:
        wait_for(lambda: pattern_tail(listener), 10, "the live source's stream")
        first.close()
        wait_for(lambda: file_tail(listener, audio), 10, "the fallback file")
        again = PacedSource(server, "/back", content_type="audio/mpeg")
        try:
            wait_for(lambda: pattern_tail(listener), 10, "the live source again (override)")
            assert not listener.closed.is_set()
        finally:
            again.close()
    finally:
        listener.close()
        first.close()


def test_an_ogg_mount_does_not_fall_back_to_an_mp3_file(served):
    server, audio = served
    with FfmpegSource(server, "/ogg", "vorbis", "application/ogg") as source:
        wait_for(lambda: content_type_of(server, "/ogg") == "application/ogg", 10,
                 "the Ogg source")
        listener = Listener(server.host, server.port, "/ogg").start()
        try:
            wait_for(lambda: len(listener.body) >= 4096, 10, "the Ogg stream")
            source.end()
            assert listener.closed.wait(10), "the Ogg listener was kept on the MP3 file"
            wait_for(lambda: "/ogg and fallback file /ogg.mp3 are of different types"
                     in server.output(), 10, "the refusal's log line")
            body, frames = bytes(listener.body), audio[id3v2_length(audio):]
            assert not any(frames[at:at + 64] in body for at in range(0, len(frames) - 64, 64))
        finally:
            listener.close()


def test_a_missing_fallback_file_is_404_with_one_log_line(served):
    server, _ = served
    answer = raw_request(server.host, server.port, b"GET /lost HTTP/1.0\r\n\r\n")
    status, body = status_and_body(answer)
    assert status.startswith(b"HTTP/1.0 404"), status
    assert NOT_FOUND.encode() in body
    line = "fallback /missing.mp3 is no live mount and no file in the webroot"
    wait_for(lambda: line in server.output(), 10, "the missing file's log line")
    assert server.output().count(line) == 1


# -- Ogg files --------------------------------------------------------------------------------

OGG_AUDIO: dict[str, bytes] = {}  # the Ogg files' bytes, by name, once `served` made them


def ffmpeg_errors(capture: bytes, path: Path) -> str:
    """What `ffmpeg -v error` says decoding `capture` (kept at `path`): "" for a clean stream."""
    path.write_bytes(capture)
    result = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "null",
                             "-"], capture_output=True, check=False)
    return result.stderr.decode(errors="replace") + (f"(status {result.returncode})"
                                                     if result.returncode else "")


@pytest.mark.parametrize("mount, name", [("/vorbis.ogg", "vorbis-file.ogg"), ("/opus.ogg", "opus-file.opus")])
def test_an_ogg_mount_without_source_plays_its_ogg_file_looped_in_real_time(
        served, tmp_path: Path, mount: str, name: str) -> None:
    server, _ = served
    audio = OGG_AUDIO[name]
    started = time.monotonic()
    listener = Listener(server.host, server.port, mount).start()
    try:
        assert listener.head.startswith(b"HTTP/1.0 200 OK"), listener.head
        assert listener.header("content-type") == "audio/ogg"  # the file's, by mime.types
        # Twice round the loop and a bit: two seams, each a new link.
        wait_for(lambda: len(listener.body) >= 2 * len(audio) + 4096, 10 * SECONDS,
                 "the file played twice and more")
        elapsed = time.monotonic() - started
        body = bytes(listener.body)
        assert not listener.closed.is_set()
    finally:
        listener.close()
    assert ffmpeg_errors(body, tmp_path / "captured.ogg") == ""
    decoded = decode(body, tmp_path / "decoded.ogg")
    assert decoded.errors == ""
    # Decodes to the loops it got: the file's audio, twice and more.
    assert decoded.seconds >= 2 * SECONDS
    # Paced by its granules: never more audio than real time allows (and then some). An
    # upper bound only: load slows it.
    assert decoded.seconds <= 2 * elapsed + SECONDS, (decoded.seconds, elapsed)
    assert len(body) <= 2 * len(audio) / SECONDS * elapsed + len(audio), (len(body), elapsed)
    wait_for(lambda: f"fallback file /{name}: playing it here paced by its granules "
             f"({48000 if name.endswith('.opus') else 44100} Hz)" in server.output(), 10,
             "the file's log line")


def test_an_ogg_listener_moves_onto_the_ogg_file_when_the_source_leaves(
        served, tmp_path: Path) -> None:
    server, _ = served
    audio = OGG_AUDIO["moved-file.ogg"]
    with FfmpegSource(server, "/moved.ogg", "vorbis", "application/ogg") as source:
        wait_for(lambda: content_type_of(server, "/moved.ogg") == "application/ogg", 10,
                 "the Ogg source")
        listener = Listener(server.host, server.port, "/moved.ogg").start()
        try:
            wait_for(lambda: len(listener.body) >= 16384, 10, "the live Ogg stream")
            source.end()
            # application/ogg onto the audio/ogg file: any Ogg stream may follow another.
            wait_for(lambda: "passing 1 listeners of /moved.ogg to fallback file /moved-file.ogg"
                     in server.output(), 10, "the move's log line")
            moved_at = len(listener.body)
            wait_for(lambda: len(listener.body) >= moved_at + len(audio) + 4096, 10 * SECONDS,
                     "the file after the live stream, round its loop")
            assert not listener.closed.is_set()
            body = bytes(listener.body)
        finally:
            listener.close()
    # One stream, the live link then the file's links, that decodes without an error.
    assert ffmpeg_errors(body, tmp_path / "captured.ogg") == ""


def test_an_ogg_file_neither_vorbis_nor_opus_is_not_played(served) -> None:
    server, _ = served
    status, _ = status_and_body(raw_request(server.host, server.port, b"GET /flac.ogg HTTP/1.0\r\n\r\n"))
    assert status.startswith(b"HTTP/1.0 404"), status
    line = ("fallback /flac-file.ogg is a file fanout cannot play: "
            "only Ogg Vorbis and Opus files are paced (by their granules)")
    wait_for(lambda: line in server.output(), 10, "the refusal's log line")


def test_an_ogg_file_without_audio_stops_after_one_pass(served) -> None:
    server, _ = served
    listener = Listener(server.host, server.port, "/silent.ogg").start()
    try:
        # Its header pages are written once, then nothing paces it: it stops, said once.
        assert listener.closed.wait(10), "the listener was kept on a file without audio"
        assert len(listener.body) <= len(OGG_AUDIO["headers-only.ogg"])  # not a pass more
    finally:
        listener.close()
    wait_for(lambda: "fallback file /headers-only.ogg: no audio in a whole pass" in server.output(),
             10, "the stop's log line")
    assert server.output().count("fallback file /headers-only.ogg: no audio in a whole pass") == 1
