"""Shoutcast-DSP (ICY) sources on shoutcast-compat ports, and `/admin.cgi` (§4.4, §6.3).

A Shoutcast source sends its password line, gets `OK2`, sends `icy-*` header lines and a
blank line, then audio. The sources here are raw sockets speaking exactly that, feeding
the byte-counting test pattern, so listeners can check the stream byte for byte.

Compat sockets are given explicitly with port 0: the port+1 socket a `<shoutcast-mount>`
implies cannot follow a kernel-chosen port, so its test picks a free pair of ports.
"""
from __future__ import annotations

import re
import socket
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import quote

import pytest

from tests.integration.test_metadata import stream_title
from tests.integration.test_streaming import wait_source_up
from tests.support.clients import (
    Listener, Source, locate_in_pattern, pattern, raw_request, read_all, split_icy,
)
from tests.support.server import (
    ADMIN_PASSWORD, LISTEN_LINE, SOURCE_PASSWORD, icecast_xml, start_fanout,
)
from tests.support.admin import wait_mount_gone
from tests.support.waiting import wait_for
from tests.support.clients import status_and_body

OK2 = b"OK2\r\nicy-caps:11\r\n\r\n"
DJ_MOUNT = "/dj.mp3"
DJ_PASSWORD = "dj-secret"
COMPAT = "<listen-socket><port>0</port><bind-address>127.0.0.1</bind-address>" \
         "<shoutcast-compat>1</shoutcast-compat>{mount}</listen-socket>"
EXTRA = (COMPAT.format(mount="")
         + COMPAT.format(mount=f"<shoutcast-mount>{DJ_MOUNT}</shoutcast-mount>"))
MOUNTS = f"<mount><mount-name>{DJ_MOUNT}</mount-name><password>{DJ_PASSWORD}</password></mount>"
STATION = {"icy-name": "Test Station", "icy-genre": "Rock", "icy-br": "128", "icy-pub": "0",
           "icy-url": "http://example.com/"}
# The server listens on 127.0.0.1; loopback accepts any 127/8 address as a client's source.
ELSEWHERE = "127.0.0.2"
# The access.log line of a Shoutcast source: its header block read as a SOURCE request.
SOURCE_LINE = re.compile(r'"SOURCE /sc\.mp3 HTTP/1\.0" 200 \d+ "-" "-" \d+$', re.MULTILINE)
ADMIN_CGI_DONE = (b"<html><head><title>Admin request successful</title></head>"
                  b"<body><p>Metadata update successful</p></body></html>")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_fanout(icecast_xml(mounts=MOUNTS, extra=EXTRA),
                       tmp_path_factory.mktemp("shoutcast"), workers=2)
    yield srv
    assert srv.stop() == 0, srv.output()


def listen_ports(server) -> list[int]:
    """Every listening port, in <listen-socket> order (the supervisor prints them so)."""
    return [int(port) for _, port in LISTEN_LINE.findall(server.output())]


def stream_port(server) -> int:
    """The compat port feeding the global shoutcast mount (/stream)."""
    return listen_ports(server)[1]


def dj_port(server) -> int:
    """The compat port whose own <shoutcast-mount> is DJ_MOUNT."""
    return listen_ports(server)[2]


class ShoutcastSource:
    """A raw-socket Shoutcast-DSP source: the password line first, the rest on request."""

    def __init__(self, host: str, port: int, password: str = SOURCE_PASSWORD) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.sendall(password.encode() + b"\r\n")
        self.sent = 0

    def read_reply(self) -> bytes:
        """The OK2 reply, or what came before the server closed."""
        reply = b""
        while len(reply) < len(OK2) and (chunk := self.sock.recv(len(OK2) - len(reply))):
            reply += chunk
        return reply

    def send_headers(self, headers: dict[str, str]) -> None:
        lines = "".join(f"{name}:{value}\r\n" for name, value in headers.items())
        self.sock.sendall(lines.encode() + b"\r\n")

    def send_pattern(self, length: int, chunk: int = 8192) -> None:
        end = self.sent + length
        while self.sent < end:
            size = min(chunk, end - self.sent)
            self.sock.sendall(pattern(self.sent, size))
            self.sent += size

    def finish(self) -> bytes:
        """Stop sending; everything the server sent after OK2, once it closed."""
        self.sock.shutdown(socket.SHUT_WR)
        rest = read_all(self.sock)
        self.sock.close()
        return rest


@contextmanager
def shoutcast_stream(server, port: int, mount: str, password: str = SOURCE_PASSWORD,
                     headers: dict[str, str] | None = None) -> Iterator[ShoutcastSource]:
    """A Shoutcast source streaming on `mount`; on exit it leaves and the mount is gone."""
    source = ShoutcastSource(server.host, port, password)
    assert source.read_reply() == OK2
    source.send_headers(STATION if headers is None else headers)
    source.send_pattern(32 * 1024)
    wait_source_up(server, mount)
    try:
        yield source
    finally:
        source.sock.close()
        wait_mount_gone(server, mount)


def admin_cgi(server, query: str, address: str = "127.0.0.1") -> bytes:
    """GET /admin.cgi?<query> from `address` on the server's HTTP port; the whole answer."""
    with socket.create_connection((server.host, server.port), timeout=5,
                                  source_address=(address, 0)) as sock:
        sock.sendall(f"GET /admin.cgi?{query} HTTP/1.0\r\n\r\n".encode())
        return read_all(sock)


def error_page(code: int, message: str) -> bytes:
    return (f"<html><head><title>Error {code}</title></head><body><b>{code} - {message}</b>"
            f"</body></html>\r\n").encode()


def title_reaches(source: ShoutcastSource, listener: Listener, title: str) -> bool:
    """Push one more interval of audio; whether the listener's blocks now carry `title`."""
    source.send_pattern(16000)
    return stream_title(title) in split_icy(bytes(listener.body), 16000)[1]


# --- the source handshake and stream -------------------------------------------------


def test_source_gets_ok2_and_its_stream_reaches_stream_listeners_byte_exact(server):
    source = ShoutcastSource(server.host, stream_port(server))
    assert source.read_reply() == OK2
    source.send_headers(STATION)
    source.send_pattern(32 * 1024)
    wait_source_up(server, "/stream")
    listener = Listener(server.host, server.port, "/stream").start()
    source.send_pattern(512 * 1024)
    assert source.finish() == b"", "nothing but OK2 is ever sent to a Shoutcast source"
    assert listener.closed.wait(20), "the listener was not closed after the source left"
    assert listener.head.startswith(b"HTTP/1.0 200 OK\r\n")
    assert listener.header("content-type") == "audio/mpeg"
    assert [listener.header(name) for name in STATION] == list(STATION.values())
    start = locate_in_pattern(bytes(listener.body))
    assert start + len(listener.body) == source.sent, "the stream's tail is missing"
    wait_mount_gone(server, "/stream")


def test_socket_shoutcast_mount_and_content_type_header_are_used(server):
    headers = {"content-type": "audio/aacp", "icy-name": "DJ set"}
    with shoutcast_stream(server, dj_port(server), DJ_MOUNT, DJ_PASSWORD, headers) as source:
        listener = Listener(server.host, server.port, DJ_MOUNT).start()
        assert listener.header("content-type") == "audio/aacp"
        assert listener.header("icy-name") == "DJ set"
        source.send_pattern(64 * 1024)
        wait_for(lambda: len(listener.body) >= 64 * 1024, 10, "the DJ's stream")
        locate_in_pattern(bytes(listener.body))


def test_password_and_headers_sent_at_once_with_audio_all_arrive(server):
    with socket.create_connection((server.host, stream_port(server)), timeout=10) as sock:
        sock.sendall(f"{SOURCE_PASSWORD}\nicy-name:At once\n\n".encode() + pattern(0, 32768))
        assert sock.recv(len(OK2)) == OK2
        wait_source_up(server, "/stream")
        listener = Listener(server.host, server.port, "/stream").start()
        sock.sendall(pattern(32768, 65536))
        wait_for(lambda: len(listener.body) >= 65536, 10, "the stream")
        assert listener.header("icy-name") == "At once"
        locate_in_pattern(bytes(listener.body))
    wait_mount_gone(server, "/stream")


# --- refusals: closed without a word, nothing else affected ------------------------------


def test_wrong_password_is_closed_with_nothing_sent_and_others_still_served(server):
    source = ShoutcastSource(server.host, stream_port(server), password="not-the-password-42")
    assert read_all(source.sock) == b""
    wait_for(lambda: "Shoutcast source on /stream: wrong password (closed)" in server.output(),
             5, "one log line")
    assert "not-the-password-42" not in server.output(), "passwords are never logged"
    with shoutcast_stream(server, stream_port(server), "/stream"):
        pass


def test_socket_mount_password_is_the_mounts_own(server):
    source = ShoutcastSource(server.host, dj_port(server), password=SOURCE_PASSWORD)
    assert read_all(source.sock) == b""


def test_http_request_on_a_compat_port_is_a_wrong_password(server):
    answer = raw_request(server.host, stream_port(server), b"GET /stream HTTP/1.0\r\n\r\n")
    assert answer == b""


def test_second_source_on_a_busy_mount_is_closed_after_ok2(server):
    with shoutcast_stream(server, stream_port(server), "/stream") as first:
        listener = Listener(server.host, server.port, "/stream").start()
        second = ShoutcastSource(server.host, stream_port(server))
        assert second.read_reply() == OK2
        second.send_headers({"icy-name": "Intruder"})
        assert read_all(second.sock) == b""
        wait_for(lambda: "Shoutcast source on /stream: Mountpoint in use (closed)"
                 in server.output(), 5, "the reason in the log")
        first.send_pattern(64 * 1024)
        wait_for(lambda: len(listener.body) >= 64 * 1024, 10, "the first source's stream")
        assert listener.header("icy-name") == "Test Station"
        locate_in_pattern(bytes(listener.body))


def test_oversized_header_block_is_closed(server):
    source = ShoutcastSource(server.host, stream_port(server))
    assert source.read_reply() == OK2
    try:
        source.sock.sendall(b"icy-name:" + b"x" * 20000 + b"\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may close before it has read everything
    assert read_all(source.sock) == b""
    wait_for(lambda: "request header too large (closed)" in server.output(), 5, "one log line")


def test_garbage_instead_of_a_password_line_is_closed(server):
    with socket.create_connection((server.host, stream_port(server)), timeout=10) as sock:
        try:
            sock.sendall(bytes(range(256)).replace(b"\n", b"") * 16)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert read_all(sock) == b""
    wait_for(lambda: "password line too long (closed)" in server.output(), 5, "one log line")


def test_malformed_header_line_is_closed(server):
    source = ShoutcastSource(server.host, stream_port(server))
    assert source.read_reply() == OK2
    source.sock.sendall(b"icy-name:ok\r\nnot a header\r\n\r\n" + pattern(0, 4096))
    assert read_all(source.sock) == b""
    assert raw_request(server.host, server.port, b"GET /stream HTTP/1.0\r\n\r\n").startswith(
        b"HTTP/1.0 404")


def test_silent_source_is_closed_after_the_header_timeout(server):
    source = ShoutcastSource(server.host, stream_port(server))
    assert source.read_reply() == OK2
    source.sock.sendall(b"icy-name:slow\r\n")  # and never the blank line
    assert read_all(source.sock) == b""  # the server's header-timeout is 3 s


# --- /admin.cgi ----------------------------------------------------------------------


def test_admin_cgi_title_reaches_icy_listeners(server):
    with shoutcast_stream(server, stream_port(server), "/stream") as source:
        listener = Listener(server.host, server.port, "/stream", icy=True).start()
        answer = admin_cgi(server, f"mode=updinfo&pass={SOURCE_PASSWORD}&song=Artist%20-%20Song")
        assert status_and_body(answer) == (b"HTTP/1.0 200 OK", ADMIN_CGI_DONE)
        assert b"Content-Type: text/html; charset=utf-8\r\n" in answer
        wait_for(lambda: title_reaches(source, listener, "Artist - Song"), 10, "the new title")
        audio, _ = split_icy(bytes(listener.body), 16000)
        locate_in_pattern(audio)


def test_admin_cgi_from_elsewhere_needs_the_admin_password(server):
    with shoutcast_stream(server, stream_port(server), "/stream") as source:
        listener = Listener(server.host, server.port, "/stream", icy=True).start()
        refused = admin_cgi(server, f"mode=updinfo&pass={SOURCE_PASSWORD}&song=Nope",
                            address=ELSEWHERE)
        assert status_and_body(refused) == (
            b"HTTP/1.0 400 Bad Request", error_page(400, "mountpoint will not accept URL updates"))
        answer = admin_cgi(server, f"mode=updinfo&pass={ADMIN_PASSWORD}&song=By%20admin",
                           address=ELSEWHERE)
        assert status_and_body(answer)[0] == b"HTTP/1.0 200 OK"
        wait_for(lambda: title_reaches(source, listener, "By admin"), 10, "the admin's title")
        assert stream_title("Nope") not in split_icy(bytes(listener.body), 16000)[1]


@pytest.mark.parametrize("query, status, message", [
    ("mode=updinfo&song=x", 400, "missing pass parameter"),
    ("mode=updinfo&pass=wrong&song=x", 401, None),
    (f"mode=updinfo&pass={SOURCE_PASSWORD}&song=x", 400, "Source does not exist"),
])
def test_admin_cgi_refusals_without_a_source(server, query, status, message):
    code, body = status_and_body(admin_cgi(server, query))
    assert code.startswith(f"HTTP/1.0 {status} ".encode())
    if message is not None:
        assert body == error_page(status, message)


def test_admin_cgi_checks_mode_and_song(server):
    with shoutcast_stream(server, stream_port(server), "/stream"):
        for query, message in ((f"pass={SOURCE_PASSWORD}&song=x", "Missing parameter"),
                               (f"mode=updinfo&pass={SOURCE_PASSWORD}", "Missing parameter"),
                               (f"mode=other&pass={SOURCE_PASSWORD}&song=x", "No such action")):
            assert status_and_body(admin_cgi(server, query)) == (
                b"HTTP/1.0 400 Bad Request", error_page(400, message)), query


def test_admin_cgi_refuses_a_mount_fed_by_an_http_source(server):
    source = Source(server.host, server.port, "/stream", content_type="audio/mpeg")
    assert source.accepted, source.response
    try:
        answer = admin_cgi(server, f"mode=updinfo&pass={SOURCE_PASSWORD}&song=x")
        assert status_and_body(answer) == (b"HTTP/1.0 400 Bad Request",
                                           error_page(400, "illegal metadata call"))
    finally:
        source.close()
        wait_mount_gone(server, "/stream")


# --- the port+1 socket a <shoutcast-mount> implies -------------------------------------


def free_port_pair() -> int:
    """A port P such that P and P+1 are both free right now."""
    while True:
        with socket.socket() as first, socket.socket() as second:
            first.bind(("127.0.0.1", 0))
            port = first.getsockname()[1]
            if port >= 65535:
                continue
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port


def test_shoutcast_mount_on_a_socket_opens_port_plus_one_for_its_sources(tmp_path):
    port = free_port_pair()
    xml = icecast_xml(port=port, extra=f"<paths><logdir>{tmp_path}</logdir></paths>").replace(
        "</listen-socket>", "<shoutcast-mount>/sc.mp3</shoutcast-mount></listen-socket>", 1)
    server = start_fanout(xml, tmp_path, workers=2)
    try:
        assert listen_ports(server) == [port, port + 1]
        with shoutcast_stream(server, port + 1, "/sc.mp3") as source:
            listener = Listener(server.host, port, "/sc.mp3", icy=True).start()
            assert listener.header("icy-name") == "Test Station"
            answer = admin_cgi(server, f"mode=updinfo&pass={SOURCE_PASSWORD}&song="
                                       + quote("Port plus one"))
            assert status_and_body(answer)[0] == b"HTTP/1.0 200 OK", answer
            wait_for(lambda: title_reaches(source, listener, "Port plus one"), 10, "the title")
        wait_for(lambda: SOURCE_LINE.search((tmp_path / "access.log").read_text()), 5,
                 "the source's access.log line")
    finally:
        assert server.stop() == 0, server.output()
