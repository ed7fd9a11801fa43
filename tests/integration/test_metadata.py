"""`/admin/metadata` and the ICY blocks it puts into MP3 streams (§5.3, §6.1, §6.3).

The update reaches whichever worker accepted the admin request; that worker hands the
block to the supervisor, which writes it into the mount's ring, so listeners on every
worker see it. The answer comes before the write: tests watch the stream for the change.

Most tests feed the mount with the byte-counting test pattern from a plain socket source,
pushing one metadata interval at a time, so each push brings the listener exactly one ICY
block and the position of every block is known.
"""
from __future__ import annotations

import socket
from urllib.parse import quote, urlencode

import pytest

from tests.integration.test_streaming import listeners_on_both_workers, wait_source_up
from tests.support.clients import Listener, basic, locate_in_pattern, pattern, read_head, split_icy
from tests.support.media import FfmpegSource, decode, needs_ffmpeg
from tests.support.server import ADMIN_PASSWORD, SOURCE_PASSWORD, icecast_xml, start_fanout
from tests.support.waiting import wait_for

ADMIN = basic("admin", ADMIN_PASSWORD)
SOURCE = basic("source", SOURCE_PASSWORD)
UPDATED = (b'<?xml version="1.0"?>\n<iceresponse><message>Metadata update successful</message>'
           b"<return>1</return></iceresponse>\n")
NOT_FROM_HERE = (b'<?xml version="1.0"?>\n<iceresponse><message>Mountpoint will not accept URL '
                 b"updates</message><return>1</return></iceresponse>\n")
NO_SUCH_ACTION = (b'<?xml version="1.0"?>\n<iceresponse><message>No such action</message>'
                  b"<return>0</return></iceresponse>\n")
INITIAL_BLOCK = b"\x01StreamTitle='';\x00"
UNCHANGED = b"\x00"
# The server listens on 127.0.0.1; loopback accepts any 127/8 address as a client's source.
HERE, ELSEWHERE = "127.0.0.1", "127.0.0.2"
UTF8_MOUNT = "/utf8.mp3"
MOUNTS = f"<mount><mount-name>{UTF8_MOUNT}</mount-name><charset>UTF-8</charset></mount>"
# Longest title that fits one block: 255·16 bytes minus the NUL and "StreamTitle='';".
LONGEST_TITLE = 255 * 16 - 1 - len("StreamTitle='';")
# Metadata intervals pushed before giving up on seeing a change.
MAX_BLOCKS_WITHOUT_CHANGE = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_fanout(icecast_xml(mounts=MOUNTS, sources=16),
                       tmp_path_factory.mktemp("metadata"), workers=2)
    yield srv
    assert srv.stop() == 0, srv.output()


def icy_block(text: bytes) -> bytes:
    """The block a listener must get for `text`: length byte, text, at least one NUL."""
    units = len(text) // 16 + 1
    return bytes((units,)) + text.ljust(16 * units, b"\x00")


def stream_title(title: str | bytes) -> bytes:
    raw = title.encode() if isinstance(title, str) else title
    return icy_block(b"StreamTitle='" + raw + b"';")


class Answer:
    """An HTTP answer: status line, head lines, body."""

    def __init__(self, raw: bytes) -> None:
        head, _, self.body = raw.partition(b"\r\n\r\n")
        self.lines = head.split(b"\r\n")
        self.status = self.lines[0]

    def __repr__(self) -> str:
        return f"Answer({self.status!r}, body={self.body!r})"

    def is_xml(self, body: bytes) -> bool:
        return (self.status == b"HTTP/1.0 200 OK" and self.body == body
                and b"Content-Type: text/xml; charset=utf-8" in self.lines)


def admin_metadata(server, query: dict[str, str] | str, auth: str | None = ADMIN,
                   address: str = HERE) -> Answer:
    """GET /admin/metadata?<query> from `address`; the whole answer."""
    if not isinstance(query, str):
        query = urlencode(query, quote_via=quote)
    lines = [f"GET /admin/metadata?{query} HTTP/1.0"] + ([f"Authorization: {auth}"] if auth else [])
    with socket.create_connection((server.host, server.port), timeout=5,
                                  source_address=(address, 0)) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return Answer(b"".join(chunks))


def html_error(code: int, message: str) -> bytes:
    return (f"<html><head><title>Error {code}</title></head><body><b>{code} - {message}</b>"
            f"</body></html>\r\n").encode()


class IcyStream:
    """A live mount fed with the test pattern and one ICY listener that joined before the
    first byte, so its metadata blocks sit exactly every `metaint` pattern bytes.

    The source is a bare socket rather than `clients.Source` because the same-IP rule needs
    it to connect from a chosen address."""

    def __init__(self, server, mount: str, source_address: str = HERE) -> None:
        self.mount = mount
        self.source = socket.create_connection((server.host, server.port), timeout=10,
                                               source_address=(source_address, 0))
        self.source.sendall(f"PUT {mount} HTTP/1.1\r\nAuthorization: {SOURCE}\r\n"
                            "Content-Type: audio/mpeg\r\n\r\n".encode())
        assert read_head(self.source)[0] == b"HTTP/1.0 200 OK\r\n\r\n"
        self.sent = 0
        wait_source_up(server, mount)
        self.listener = Listener(server.host, server.port, mount, icy=True).start()
        self.metaint = int(self.listener.header("icy-metaint"))
        self.seen = 0
        self._send(self.metaint // 2)  # from here on every push crosses exactly one boundary
        assert self.next_block() == INITIAL_BLOCK, "the first block is the full metadata"

    def _send(self, length: int) -> None:
        self.source.sendall(pattern(self.sent, length))
        self.sent += length

    def received(self) -> tuple[bytes, list[bytes]]:
        return split_icy(bytes(self.listener.body), self.metaint)

    def next_block(self) -> bytes:
        """Push one more interval of audio; the block the listener got at its boundary."""
        self._send(self.metaint)
        wait_for(lambda: len(self.received()[0]) == self.sent, 5, "the listener to catch up")
        audio, blocks = self.received()
        assert locate_in_pattern(audio) == 0, "audio and metadata are not interleaved exactly"
        assert len(blocks) == self.seen + 1
        self.seen += 1
        return blocks[-1]

    def next_change(self) -> bytes:
        """Push audio until a block other than "unchanged" arrives; that block."""
        for _ in range(MAX_BLOCKS_WITHOUT_CHANGE):
            block = self.next_block()
            if block != UNCHANGED:
                return block
        raise AssertionError(f"no metadata change in {MAX_BLOCKS_WITHOUT_CHANGE} blocks")

    def close(self) -> None:
        self.listener.close()
        self.source.close()


@pytest.fixture
def open_stream(server):
    streams: list[IcyStream] = []

    def open_(mount: str, source_address: str = HERE) -> IcyStream:
        streams.append(IcyStream(server, mount, source_address))
        return streams[-1]

    yield open_
    for stream in streams:
        stream.close()


def assert_nothing_changes(stream: IcyStream) -> None:
    """After a refused update the listener keeps getting "unchanged" blocks."""
    for _ in range(2):
        assert stream.next_block() == UNCHANGED, "a refused update reached the listeners"


# --- the update as listeners see it ---------------------------------------------------


@needs_ffmpeg
def test_song_update_reaches_icy_listeners_on_every_worker_between_clean_audio(server, tmp_path):
    titled = stream_title("Artist - Title")

    def title_then_another_block(listener: Listener) -> bool:
        blocks = split_icy(bytes(listener.body), metaint)[1]
        return titled in blocks and blocks.index(titled) < len(blocks) - 1

    with FfmpegSource(server, "/live.mp3", "mp3", "audio/mpeg") as ffmpeg:
        wait_source_up(server, "/live.mp3")
        listeners = listeners_on_both_workers(server, "/live.mp3", icy=True)
        metaint = int(listeners[0].header("icy-metaint"))
        wait_for(lambda: all(split_icy(bytes(l.body), metaint)[1] for l in listeners), 5,
                 "every listener's first block")
        answer = admin_metadata(server, "mount=/live.mp3&mode=updinfo&song=Artist%20-%20Title")
        assert answer.is_xml(UPDATED), answer
        wait_for(lambda: all(title_then_another_block(l) for l in listeners), 10,
                 "the title, then one more block, at every listener")
        ffmpeg.end()
    for number, listener in enumerate(listeners):
        assert listener.closed.wait(10)
        assert listener.header("icy-metaint") == "16000"
        audio, blocks = split_icy(bytes(listener.body), metaint)
        assert blocks[0] == INITIAL_BLOCK, "the first block is the full initial metadata"
        changed = blocks.index(titled)
        assert set(blocks[1:changed] + blocks[changed + 1:]) == {UNCHANGED}
        decoded = decode(audio, tmp_path / f"listener{number}.mp3")
        assert decoded.errors == "", f"listener {number}: {decoded.errors}"


def test_artist_and_title_become_artist_dash_title(server, open_stream):
    stream = open_stream("/artist-title")
    answer = admin_metadata(server, {"mount": stream.mount, "mode": "updinfo",
                                     "artist": "A", "title": "T"})
    assert answer.is_xml(UPDATED)
    assert stream.next_change() == stream_title("A - T")


def test_apostrophe_in_title_is_sent_raw(server, open_stream):
    stream = open_stream("/apostrophe")
    admin_metadata(server, {"mount": stream.mount, "mode": "updinfo", "song": "O'Brien - Don't"})
    assert stream.next_change() == stream_title("O'Brien - Don't")


def test_utf8_title_with_charset_arrives_byte_exact_on_a_utf8_mount(server, open_stream):
    stream = open_stream(UTF8_MOUNT)
    title = "Björk – Jóga ♪ 東京"
    admin_metadata(server, {"mount": UTF8_MOUNT, "mode": "updinfo", "song": title,
                            "charset": "UTF-8"})
    assert stream.next_change() == stream_title(title.encode("utf-8"))


def test_utf8_title_with_charset_is_converted_to_the_default_latin1_mount_charset(
        server, open_stream):
    stream = open_stream("/latin1")
    title = "Björk Guðmundsdóttir"
    admin_metadata(server, {"mount": stream.mount, "mode": "updinfo", "song": title,
                            "charset": "UTF-8"})
    assert stream.next_change() == stream_title(title.encode("latin-1"))


def test_title_without_charset_is_inserted_as_received(server, open_stream):
    stream = open_stream("/as-received")
    title = "Björk Guðmundsdóttir"
    admin_metadata(server, {"mount": stream.mount, "mode": "updinfo", "song": title})
    assert stream.next_change() == stream_title(title.encode("utf-8"))


def test_text_filling_whole_units_still_ends_with_a_nul(server, open_stream):
    stream = open_stream("/whole-units")
    title = "x" * (32 - len("StreamTitle='';"))
    admin_metadata(server, {"mount": stream.mount, "mode": "updinfo", "song": title})
    block = stream.next_change()
    assert block == b"\x03StreamTitle='" + title.encode() + b"';" + bytes(16)


def test_longest_title_that_fits_fills_a_255_unit_block(server, open_stream):
    stream = open_stream("/longest")
    title = "x" * LONGEST_TITLE
    admin_metadata(server, {"mount": stream.mount, "mode": "updinfo", "song": title})
    block = stream.next_change()
    assert block == stream_title(title) and block[0] == 255 and block.endswith(b"';\x00")


def test_over_long_title_is_refused_and_the_old_title_stays(server, open_stream):
    stream = open_stream("/too-long")
    admin_metadata(server, {"mount": stream.mount, "mode": "updinfo", "song": "old"})
    assert stream.next_change() == stream_title("old")
    admin_metadata(server, {"mount": stream.mount, "mode": "updinfo",
                            "song": "x" * (LONGEST_TITLE + 1)})
    assert_nothing_changes(stream)


# --- who may update (§6.1, same-IP rule) ----------------------------------------------


def test_metadata_without_credentials_is_a_401_challenge(server, open_stream):
    stream = open_stream("/no-auth")
    answer = admin_metadata(server, {"mount": stream.mount, "mode": "updinfo", "song": "x"},
                            auth=None)
    assert answer.status == b"HTTP/1.0 401 Authentication Required"
    assert b'WWW-Authenticate: Basic realm="Icecast2 Server"' in answer.lines
    assert_nothing_changes(stream)


def test_metadata_with_a_wrong_admin_password_is_401(server, open_stream):
    stream = open_stream("/wrong-auth")
    answer = admin_metadata(server, {"mount": stream.mount, "mode": "updinfo", "song": "x"},
                            auth=basic("admin", "wrong"))
    assert answer.status == b"HTTP/1.0 401 Authentication Required"
    assert_nothing_changes(stream)


def test_source_credentials_update_metadata_from_the_sources_address(server, open_stream):
    stream = open_stream("/by-source")
    answer = admin_metadata(server, {"mount": stream.mount, "mode": "updinfo", "song": "mine"},
                            auth=SOURCE)
    assert answer.is_xml(UPDATED)
    assert stream.next_change() == stream_title("mine")


def test_source_credentials_from_another_address_are_refused(server, open_stream):
    stream = open_stream("/elsewhere", source_address=ELSEWHERE)
    answer = admin_metadata(server, {"mount": stream.mount, "mode": "updinfo", "song": "x"},
                            auth=SOURCE, address=HERE)
    assert answer.is_xml(NOT_FROM_HERE)
    assert_nothing_changes(stream)


def test_admin_credentials_update_metadata_from_any_address(server, open_stream):
    stream = open_stream("/admin-anywhere", source_address=ELSEWHERE)
    answer = admin_metadata(server, {"mount": stream.mount, "mode": "updinfo", "song": "admin"},
                            address=HERE)
    assert answer.is_xml(UPDATED)
    assert stream.next_change() == stream_title("admin")


# --- malformed requests -----------------------------------------------------------------


def test_metadata_without_mode_is_400_missing_parameter(server, open_stream):
    stream = open_stream("/no-mode")
    answer = admin_metadata(server, {"mount": stream.mount, "song": "x"})
    assert answer.status == b"HTTP/1.0 400 Bad Request"
    assert answer.body == html_error(400, "Missing parameter")
    assert_nothing_changes(stream)


def test_metadata_with_another_mode_answers_no_such_action(server, open_stream):
    stream = open_stream("/other-mode")
    answer = admin_metadata(server, {"mount": stream.mount, "mode": "other", "song": "x"})
    assert answer.is_xml(NO_SUCH_ACTION)
    assert_nothing_changes(stream)


def test_metadata_for_an_unknown_mount_is_400_source_does_not_exist(server):
    answer = admin_metadata(server, {"mount": "/nobody", "mode": "updinfo", "song": "x"})
    assert answer.status == b"HTTP/1.0 400 Bad Request"
    assert answer.body == html_error(400, "Source does not exist")
