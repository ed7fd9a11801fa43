"""The elements that go with a mount's source, on a real fanout (issue 11):
`<on-connect>` / `<on-disconnect>` programs, `<dump-file>`, `<intro>` and
`<logging><playlistlog>`.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.support.admin import get, wait_mount_gone
from tests.support.clients import Listener, Source, locate_in_pattern, pattern, split_icy
from tests.support.media import decode, needs_ffmpeg, ogg_pages
from tests.support.splits import encode_tone
from tests.support.server import FanoutProcess, icecast_xml, start_fanout
from tests.support.waiting import wait_for

HOOKED = "/hooked"
SLOW_HOOK = "/slow-hook"
DUMPED = "/dumped"
UNDUMPABLE = "/undumpable"
TITLED = "/titled.mp3"
INTRO_MP3 = "/intro.mp3"
INTRO_OGG = "/intro.ogg"
WRONG_INTRO = "/wrong-intro.mp3"
INTRO_METAINT = 3000  # several ICY blocks fall inside the intro
# strftime(3) fields in the dump file's name, as 2.4.4 expands them when the source starts.
DUMP_PATTERN = "dump-%Y%m%d.raw"


def executable(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("source-elements")


@pytest.fixture(scope="module")
def server(place: Path):  # type: ignore[no-untyped-def]
    def recorder(name: str, wait_first: str = "") -> str:
        """A program that notes its name and arguments in the calls file."""
        return executable(place / name, f'#!/bin/sh\n{wait_first}echo "{name} $#:$1" >> {place / "calls"}\n')

    connect, disconnect = recorder("connect"), recorder("disconnect")
    # waits until the test lets it finish: if waiting for it blocked the worker, the source
    # on its mount would not stream meanwhile
    waiting = recorder("waiting", f"while [ ! -e {place / 'go'} ]; do sleep 0.05; done\n")
    mounts = (f"<mount><mount-name>{HOOKED}</mount-name><on-connect>{connect}</on-connect>"
              f"<on-disconnect>{disconnect}</on-disconnect></mount>"
              f"<mount><mount-name>{SLOW_HOOK}</mount-name><on-connect>{waiting}</on-connect></mount>"
              f"<mount><mount-name>{DUMPED}</mount-name>"
              f"<dump-file>{place / DUMP_PATTERN}</dump-file></mount>"
              f"<mount><mount-name>{UNDUMPABLE}</mount-name>"
              f"<dump-file>{place / 'missing' / 'dump.raw'}</dump-file></mount>")
    mounts += (f"<mount><mount-name>{INTRO_MP3}</mount-name><intro>/jingle.mp3</intro>"
               f"<mp3-metadata-interval>{INTRO_METAINT}</mp3-metadata-interval></mount>"
               f"<mount><mount-name>{INTRO_OGG}</mount-name><intro>/jingle.ogg</intro></mount>"
               f"<mount><mount-name>{WRONG_INTRO}</mount-name><intro>/jingle.ogg</intro></mount>")
    (place / "log").mkdir()
    (place / "web").mkdir()
    logging = (f"<paths><logdir>{place / 'log'}</logdir><webroot>{place / 'web'}</webroot></paths>"
               "<logging><playlistlog>playlist.log</playlistlog></logging>")
    srv = start_fanout(icecast_xml(mounts=mounts, extra=logging), place, workers=2)
    yield srv
    assert srv.stop() == 0, srv.output()


def error_log(place: Path) -> str:
    return (place / "log" / "error.log").read_text()


def calls(place: Path) -> list[str]:
    path = place / "calls"
    return path.read_text().splitlines() if path.exists() else []


def stream_through(server: FanoutProcess, mount: str, length: int) -> bytes:
    """A source sends `length` pattern bytes while a listener plays; what it got."""
    source = Source(server.host, server.port, mount)
    assert source.accepted, source.response
    source.send_pattern(4096)
    listener = Listener(server.host, server.port, mount).start()
    source.send_pattern(length - 4096)
    wait_for(lambda: len(listener.body) >= length - 4096, 10, "the listener's stream")
    source.close()
    listener.closed.wait(10)
    return bytes(listener.body)


# ---- on-connect / on-disconnect -------------------------------------------------------------


def test_on_connect_and_on_disconnect_run_with_the_mount_name(server, place: Path) -> None:
    source = Source(server.host, server.port, HOOKED)
    assert source.accepted
    wait_for(lambda: calls(place) == [f"connect 1:{HOOKED}"], 10, "on-connect")
    source.send_pattern(8192)
    source.close()
    wait_for(lambda: len(calls(place)) == 2, 10, "on-disconnect")
    assert calls(place)[1] == f"disconnect 1:{HOOKED}"


def test_a_program_still_running_does_not_hold_the_source(server, place: Path) -> None:
    before = len(calls(place))
    got = stream_through(server, SLOW_HOOK, 64 * 1024)  # while its on-connect still waits
    assert got == pattern(0, len(got)) and len(got) >= 60 * 1024
    assert len(calls(place)) == before
    (place / "go").touch()
    wait_for(lambda: len(calls(place)) == before + 1, 10, "the waiting program to finish")
    assert calls(place)[-1] == f"waiting 1:{SLOW_HOOK}"


# ---- dump-file ------------------------------------------------------------------------------


def test_dump_file_gets_every_byte_of_each_source_appended(server, place: Path) -> None:
    names = {time.strftime(DUMP_PATTERN)}
    stream_through(server, DUMPED, 96 * 1024)
    wait_for(lambda: "source on /dumped ended" in error_log(place), 10, "the first source's end")
    stream_through(server, DUMPED, 32 * 1024)
    names.add(time.strftime(DUMP_PATTERN))  # the day may have turned meanwhile
    dumps = [place / name for name in sorted(names) if (place / name).exists()]
    wait_for(lambda: sum(p.stat().st_size for p in dumps) == 128 * 1024, 10, "both dumps")
    assert b"".join(p.read_bytes() for p in dumps) == pattern(0, 96 * 1024) + pattern(0, 32 * 1024)


def test_a_dump_file_that_cannot_be_opened_disables_only_the_dump(server, place: Path) -> None:
    got = stream_through(server, UNDUMPABLE, 32 * 1024)
    assert got == pattern(0, len(got)) and len(got) >= 28 * 1024
    assert (f"{UNDUMPABLE}: cannot open dump file '{place / 'missing' / 'dump.raw'}' for "
            "appending: No such file or directory, disabling") in error_log(place)


# ---- playlistlog ----------------------------------------------------------------------------


def test_playlist_log_has_a_line_per_title_change_with_the_listeners_then(server, place: Path) -> None:
    source = Source(server.host, server.port, TITLED, content_type="audio/mpeg")
    assert source.accepted
    source.send(b"\0" * 4096)
    listeners = [Listener(server.host, server.port, TITLED).start() for _ in range(2)]
    playlist = place / "log" / "playlist.log"
    for song in ("Artist - First", "Artist - Second"):
        when = time.time()
        assert get(server, f"/admin/metadata?mount={TITLED}&mode=updinfo&song={quote(song)}").status == 200
        wait_for(lambda: playlist.exists() and playlist.read_text().endswith(f"|{song}\n"), 10,
                 f"the line of {song!r}")
        line = playlist.read_text().splitlines()[-1]
        date, mount, count, title = line.split("|")
        assert (mount, count, title) == (TITLED, "2", song)
        assert abs(time.mktime(time.strptime(date, "%d/%b/%Y:%H:%M:%S %z")) - when) < 5
    assert len(playlist.read_text().splitlines()) == 2
    for listener in listeners:
        listener.close()
    source.close()


# ---- intro ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jingles(place: Path) -> dict[str, bytes]:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    made = {"mp3": encode_tone("-c:a", "libmp3lame", "-b:a", "64k", "-f", "mp3", seconds=1, freq=880),
            "ogg": encode_tone("-c:a", "libvorbis", "-f", "ogg", seconds=1, freq=880)}
    for kind, data in made.items():
        (place / "web" / f"jingle.{kind}").write_bytes(data)
    return made


def test_a_new_listener_gets_the_intro_then_the_stream(server, jingles: dict[str, bytes]) -> None:
    source = Source(server.host, server.port, INTRO_MP3, content_type="audio/mpeg")
    assert source.accepted
    source.send_pattern(8192)
    listener = Listener(server.host, server.port, INTRO_MP3).start()
    intro = jingles["mp3"]
    source.send_pattern(32 * 1024)
    wait_for(lambda: len(listener.body) >= len(intro) + 16 * 1024, 10, "intro and stream")
    listener.close()
    source.close()
    wait_mount_gone(server, INTRO_MP3)  # the next test's source claims it again
    body = bytes(listener.body)
    assert body[:len(intro)] == intro
    locate_in_pattern(body[len(intro):])  # the stream follows, untouched


def test_with_icy_metadata_the_intro_counts_as_audio(server, jingles: dict[str, bytes]) -> None:
    source = Source(server.host, server.port, INTRO_MP3, content_type="audio/mpeg")
    assert source.accepted
    source.send_pattern(8192)
    assert get(server, f"/admin/metadata?mount={INTRO_MP3}&mode=updinfo&song=Jingle").status == 200
    # the stats show a title once the supervisor put its block into the ring
    wait_for(lambda: b'"title":"Jingle"' in get(server, "/status-json.xsl", None).body, 10,
             "the title in the ring")
    listener = Listener(server.host, server.port, INTRO_MP3, icy=True).start()
    intro = jingles["mp3"]
    source.send_pattern(32 * 1024)
    wait_for(lambda: len(listener.body) >= len(intro) + 24 * 1024, 10, "intro and stream")
    listener.close()
    source.close()
    wait_mount_gone(server, INTRO_MP3)  # for whichever test claims it next
    assert listener.header("icy-metaint") == str(INTRO_METAINT)
    audio, blocks = split_icy(bytes(listener.body), INTRO_METAINT)
    assert audio[:len(intro)] == intro
    locate_in_pattern(audio[len(intro):])
    title = b"StreamTitle='Jingle';"
    assert blocks[0] == bytes([2]) + title + b"\0" * (32 - len(title))  # the full block first
    assert set(blocks[1:]) == {b"\0"}  # then "unchanged", in the intro and in the stream
    assert len(blocks) >= len(intro) // INTRO_METAINT + 2


@needs_ffmpeg
def test_an_ogg_intro_is_a_link_before_the_streams_own_header_pages(server, jingles, tmp_path) -> None:
    stream = encode_tone("-c:a", "libvorbis", "-f", "ogg", seconds=3)
    source = Source(server.host, server.port, INTRO_OGG, content_type="application/ogg")
    assert source.accepted
    source.send(stream[:len(stream) // 2])
    listener = Listener(server.host, server.port, INTRO_OGG).start()
    source.send(stream[len(stream) // 2:])
    source.close()
    assert listener.closed.wait(10)
    body = bytes(listener.body)
    assert body[:len(jingles["ogg"])] == jingles["ogg"]
    pages = ogg_pages(body[len(jingles["ogg"]):])
    assert pages[0].bos and pages[0].body.startswith(b"\x01vorbis")  # the stream's own headers
    decoded = decode(body, tmp_path / "intro-then-stream.ogg")
    assert decoded.errors == "" and decoded.seconds > 1.0


def test_an_intro_in_another_format_is_refused_with_one_line(server, jingles, place: Path) -> None:
    source = Source(server.host, server.port, WRONG_INTRO, content_type="audio/mpeg")
    assert source.accepted
    source.send_pattern(8192)
    listeners = [Listener(server.host, server.port, WRONG_INTRO).start() for _ in range(4)]
    source.send_pattern(16 * 1024)
    for listener in listeners:
        wait_for(lambda: len(listener.body) >= 8192, 10, "the stream")
        listener.close()
        locate_in_pattern(bytes(listener.body))  # no intro: the stream alone
    source.close()
    line = (f"{WRONG_INTRO}: intro file '{place / 'web' / 'jingle.ogg'}' not sent: the intro is "
            "ogg, the mount's audio/mpeg is mpeg")
    # read once per source by each worker that serves it (2), not once per listener (4)
    assert 1 <= error_log(place).count(line) <= 2
