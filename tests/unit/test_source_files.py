"""fanout.source_files and fanout.model.intro: dump files, intros (with their format check)
and playlist.log lines."""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

import pytest

from fanout.config import parse_config
from fanout.model.ingest import GENERIC, OGG
from fanout.model.intro import detect_format, id3v2_length, interleave_icy, intro_mismatch
from fanout.model.mpeg import ADTS, MPEG
from fanout.protocol.access_log import clf_date
from fanout.protocol.playlist_log import MAX_LINE_BYTES, playlist_line
from fanout.source_files import (
    MAX_INTRO_BYTES, DumpFile, PlaylistLog, dump_file_name, intro_path, load_intro,
)
from tests.support.splits import encode_tone

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
WHEN = 1_700_000_000.0


@pytest.fixture(scope="module")
def tones() -> dict[str, bytes]:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    return {
        "mp3": encode_tone("-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3", seconds=1),
        "vorbis": encode_tone("-c:a", "libvorbis", "-f", "ogg", seconds=1),
        "opus": encode_tone("-c:a", "libopus", "-f", "ogg", seconds=1),
        "aac": encode_tone("-c:a", "aac", "-b:a", "64k", "-f", "adts", seconds=1),
    }


# ---- intro format ---------------------------------------------------------------------------


def test_formats_are_recognised_from_content(tones: dict[str, bytes]) -> None:
    assert id3v2_length(tones["mp3"]) > 0  # ffmpeg's MP3 starts with an ID3v2 tag
    assert [detect_format(tones[name]) for name in ("mp3", "vorbis", "opus", "aac")] == [
        MPEG, OGG, OGG, ADTS]
    assert detect_format(b"<html>not audio</html>" * 100) == GENERIC
    assert detect_format(b"") == GENERIC


def test_a_lone_frame_header_is_not_mp3() -> None:
    assert detect_format(b"\xff\xfb\x90\x00" + bytes(2000)) == GENERIC


def test_intro_must_match_the_mounts_format_family(tones: dict[str, bytes]) -> None:
    assert intro_mismatch(tones["mp3"], "audio/mpeg") is None
    assert intro_mismatch(tones["opus"], "audio/ogg") is None
    assert intro_mismatch(tones["vorbis"], "application/ogg; charset=x") is None
    assert intro_mismatch(tones["aac"], "audio/aacp") is None
    assert intro_mismatch(tones["vorbis"], "audio/mpeg") == \
        "the intro is ogg, the mount's audio/mpeg is mpeg"
    assert intro_mismatch(b"junk" * 100, "audio/ogg") == \
        "the intro is in no format fanout recognises, the mount's audio/ogg is ogg"
    # A mount whose type says nothing we know takes anything, as 2.4.4 does.
    assert intro_mismatch(b"junk", "video/x-flv") is None and intro_mismatch(b"junk", None) is None


def test_load_intro_reads_the_file_under_the_webroot(tmp_path: Path, tones: dict[str, bytes]) -> None:
    (tmp_path / "intro.mp3").write_bytes(tones["mp3"])
    assert intro_path(str(tmp_path), "/intro.mp3") == str(tmp_path / "intro.mp3")
    assert load_intro("/live", str(tmp_path), "/intro.mp3", "audio/mpeg") == tones["mp3"]
    assert load_intro("/live", str(tmp_path), "intro.mp3", "audio/mpeg") == tones["mp3"]


def test_load_intro_refuses_with_one_log_line(tmp_path: Path, tones: dict[str, bytes],
                                              caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "intro.ogg").write_bytes(tones["vorbis"])
    with caplog.at_level(logging.WARNING, logger="fanout"):
        assert load_intro("/live", str(tmp_path), "/intro.ogg", "audio/mpeg") is None
        assert load_intro("/live", str(tmp_path), "/missing.mp3", "audio/mpeg") is None
        assert load_intro("/live", None, "/intro.mp3", "audio/mpeg") is None
    assert [record.getMessage() for record in caplog.records] == [
        f"/live: intro file '{tmp_path}/intro.ogg' not sent: the intro is ogg, the mount's "
        "audio/mpeg is mpeg",
        f"/live: cannot open intro file '{tmp_path}/missing.mp3': No such file or directory",
        "/live: <intro> /intro.mp3 needs <paths><webroot>: no intro",
    ]


def test_intro_larger_than_the_bound_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "big").write_bytes(bytes(MAX_INTRO_BYTES + 1))
    (tmp_path / "fits").write_bytes(bytes(MAX_INTRO_BYTES))
    with caplog.at_level(logging.WARNING, logger="fanout"):
        assert load_intro("/a", str(tmp_path), "/big", None) is None
        assert load_intro("/a", str(tmp_path), "/fits", None) == bytes(MAX_INTRO_BYTES)
    assert [r.getMessage() for r in caplog.records] == [
        f"/a: intro file '{tmp_path}/big' is over {MAX_INTRO_BYTES} bytes: no intro"]


# ---- dump files -----------------------------------------------------------------------------


def test_dump_file_name_goes_through_strftime_in_local_time() -> None:
    local = time.localtime(WHEN)
    assert dump_file_name("/d/live-%F-%H.mp3", WHEN) == \
        f"/d/live-{local.tm_year:04d}-{local.tm_mon:02d}-{local.tm_mday:02d}-{local.tm_hour:02d}.mp3"
    assert dump_file_name("/d/plain.mp3", WHEN) == "/d/plain.mp3"


def test_dump_appends_every_source_start_to_the_same_file(tmp_path: Path) -> None:
    pattern = str(tmp_path / "dump.mp3")
    for chunk in (b"first", b"second"):
        dump = DumpFile.open("/live", pattern, WHEN)
        assert dump is not None and dump.active
        dump.write("/live", chunk)
        dump.close()
        assert not dump.active
    assert (tmp_path / "dump.mp3").read_bytes() == b"firstsecond"


def test_dump_that_cannot_be_opened_is_disabled_with_one_line(tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="fanout"):
        assert DumpFile.open("/live", str(tmp_path / "no" / "dir.mp3"), WHEN) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"/live: cannot open dump file '{tmp_path}/no/dir.mp3' for appending: "
        "No such file or directory, disabling"]


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_dump_write_failure_disables_it_with_one_line(caplog: pytest.LogCaptureFixture) -> None:
    dump = DumpFile.open("/live", "/dev/full", WHEN)  # every write fails with ENOSPC
    assert dump is not None
    with caplog.at_level(logging.WARNING, logger="fanout"):
        dump.write("/live", b"x" * 100)
        dump.write("/live", b"y" * 100)  # disabled: no second line
    assert not dump.active
    assert [r.getMessage() for r in caplog.records] == [
        "/live: write to dump file '/dev/full' failed: No space left on device, disabling"]


# ---- playlist.log ---------------------------------------------------------------------------


def test_playlist_line_is_2_4_4s_pipe_format() -> None:
    assert playlist_line(WHEN, "/live.mp3", 42, "Artist - Title") == \
        f"{clf_date(WHEN)}|/live.mp3|42|Artist - Title"


def test_playlist_line_cannot_be_forged_or_grow_past_the_bound() -> None:
    assert playlist_line(WHEN, "/m", 1, "A\nB\rC").endswith("|A\\x0aB\\x0dC")
    line = playlist_line(WHEN, "/m", 1, "é" * MAX_LINE_BYTES)
    assert len(line.encode("utf-8")) <= MAX_LINE_BYTES and line.endswith("é")


def test_playlist_log_appends_lines(tmp_path: Path) -> None:
    playlist = PlaylistLog(str(tmp_path / "playlist.log"))
    playlist.add("/a", 1, "one", WHEN)
    playlist.add("/b", 2, "two", WHEN)
    assert (tmp_path / "playlist.log").read_text().splitlines() == [
        playlist_line(WHEN, "/a", 1, "one"), playlist_line(WHEN, "/b", 2, "two")]


def test_playlist_log_failure_is_said_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    playlist = PlaylistLog(str(tmp_path / "missing" / "playlist.log"))
    with caplog.at_level(logging.WARNING, logger="fanout"):
        playlist.add("/a", 1, "one", WHEN)
        playlist.add("/a", 1, "two", WHEN)
    assert [r.getMessage() for r in caplog.records] == [
        f"cannot write the playlist log {tmp_path}/missing/playlist.log: No such file or directory"]


def test_playlist_log_lives_in_the_logdir_and_needs_one(caplog: pytest.LogCaptureFixture) -> None:
    logged = "<logging><playlistlog>playlist.log</playlistlog></logging>"
    placed = PlaylistLog.of(parse_config(f"<icecast><paths><logdir>/var/log/x</logdir></paths>{logged}</icecast>"))
    assert placed is not None and placed.path == "/var/log/x/playlist.log"
    assert PlaylistLog.of(parse_config("<icecast><paths><logdir>/l</logdir></paths></icecast>")) is None
    with caplog.at_level(logging.WARNING, logger="fanout"):
        assert PlaylistLog.of(parse_config(f"<icecast>{logged}</icecast>")) is None
    assert [r.getMessage() for r in caplog.records] == [
        "<playlistlog> playlist.log needs <paths><logdir>: titles are not logged"]


# ---- intro and ICY metadata -----------------------------------------------------------------

BLOCK = b"\x01StreamTitle='';" + b"\0" * 2  # a full block: length byte + 16 bytes


@pytest.mark.parametrize("length, metaint, wire, owed", [
    (0, 4, b"", 4),  # no intro: the stream starts the count
    (3, 4, b"abc", 1),  # shorter than an interval: 1 audio byte until the first block
    (4, 4, b"abcd", 0),  # exactly one interval: the stream sends the block at once
    (5, 4, b"abcd" + BLOCK + b"e", 3),
    (9, 4, b"abcd" + BLOCK + b"efgh" + b"\0" + b"i", 3),  # only the first block is full
    (8, 4, b"abcd" + BLOCK + b"efgh", 0),
    (3, 0, b"abc", 0),  # no metadata asked for: the intro as it is
])
def test_intro_bytes_count_as_audio_between_icy_blocks(length: int, metaint: int, wire: bytes,
                                                       owed: int) -> None:
    assert interleave_icy(b"abcdefghi"[:length], metaint, BLOCK) == (wire, owed)
