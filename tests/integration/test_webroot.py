"""`<paths><alias>`, webroot files, `<fileserve>` and `<mime-types>` on a real fanout (issue 11).

A GET whose path names no live mount is a file under the webroot (§5.1 step 7), answered
with its type, `Range`, `Last-Modified`; aliases rewrite a path first, per listen socket
(its port and bind-address), before the admin and mount routes. One worker, so that a
large download shows it does not hold the worker up.
"""
from __future__ import annotations

import os
import re
import signal
import socket
from pathlib import Path

import pytest

from tests.support.admin import ADMIN, Answer, get
from tests.support.clients import Listener, Source, pattern, raw_request
from tests.support.server import FanoutProcess, icecast_xml, start_fanout
from tests.support.waiting import wait_for

SECOND_ADDRESS = "127.0.0.2"  # a second listen socket, on another loopback address
BIG = 32 * 1024 * 1024  # a file far larger than the socket buffers of a loopback connection
MIME_TYPES = "# test types\ntext/html html htm\napplication/x-fanout-test bin\n"
ALIASES = ('<alias source="/about" destination="/index.html"/>'
           f'<alias source="/second-only" destination="/index.html" bind-address="{SECOND_ADDRESS}"/>'
           '<alias source="/port-one" destination="/index.html" port="1"/>'
           '<alias source="/stats" destination="/admin/stats"/>')
HEADERS = '<http-headers><header name="X-Station" value="fanout test"/></http-headers>'
LISTEN = re.compile(r"listening on http://127\.0\.0\.2:(\d+)/")


def config(webroot: Path, mime: Path, aliases: str = ALIASES, fileserve: int = 1) -> str:
    second = f"<listen-socket><port>0</port><bind-address>{SECOND_ADDRESS}</bind-address></listen-socket>"
    return icecast_xml(extra=f"{second}<fileserve>{fileserve}</fileserve><mime-types>{mime}</mime-types>"
                             f"{HEADERS}<paths><webroot>{webroot}</webroot>{aliases}</paths>")


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    place = tmp_path_factory.mktemp("webroot")
    web = place / "web"
    (web / "sub").mkdir(parents=True)
    (web / "index.html").write_text("<html>fanout</html>\n")
    (web / "style.css").write_text("body {}\n")
    (web / "data.bin").write_bytes(bytes(range(256)) * 4)
    (web / "blob.xyz").write_bytes(b"x" * 10)
    (web / "sub" / "page.htm").write_text("sub page\n")
    (web / "song.mp3").write_bytes(b"ID3 not a stream")
    (web / "big.bin").write_bytes(os.urandom(1024) * (BIG // 1024))
    (web / "inside-link.html").symlink_to(web / "index.html")
    (web / "outside-link").symlink_to(place / "secret")
    (place / "secret").write_text("outside the webroot\n")
    (place / "mime.types").write_text(MIME_TYPES)
    return place


@pytest.fixture(scope="module")
def server(place: Path):  # type: ignore[no-untyped-def]
    srv = start_fanout(config(place / "web", place / "mime.types"), place, workers=1)
    yield srv
    assert srv.stop() == 0, srv.output()


def request(server: FanoutProcess, path: str, *, method: str = "GET", headers: str = "",
            host: str | None = None, port: int | None = None) -> Answer:
    raw = raw_request(host or server.host, port or server.port,
                      f"{method} {path} HTTP/1.0\r\n{headers}\r\n".encode())
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = {name.strip().lower(): value.strip()
              for name, _, value in (line.partition(":") for line in lines)}
    return Answer(int(status_line.split()[1]), fields | {"status-line": status_line}, body)


def second_port(server: FanoutProcess) -> int:
    match = LISTEN.search(server.output())
    assert match, server.output()
    return int(match.group(1))


# ---- files ----------------------------------------------------------------------------------


def test_a_file_is_served_with_its_type_size_date_and_the_global_headers(server, place: Path) -> None:
    answer = request(server, "/index.html")
    assert answer.status == 200 and answer.body == b"<html>fanout</html>\n"
    assert answer.headers["status-line"] == "HTTP/1.0 200 OK"
    assert answer.headers["content-type"] == "text/html"  # from the mime.types file
    assert answer.headers["content-length"] == str(len(answer.body))
    assert answer.headers["accept-ranges"] == "bytes"
    assert answer.headers["x-station"] == "fanout test"
    mtime = (place / "web" / "index.html").stat().st_mtime
    assert answer.headers["last-modified"] == _http_date(mtime)


@pytest.mark.parametrize("path, expected", [
    ("/data.bin", "application/x-fanout-test"),  # the mime.types file
    ("/style.css", "text/css"),  # not in it: 2.4.4's built-in type
    ("/blob.xyz", "application/octet-stream"),  # nobody knows it
    ("/sub/page.htm", "text/html"),
    ("/inside-link.html", "text/html"),  # a symlink that stays inside
])
def test_types_come_from_the_mime_types_file_then_2_4_4s_own(server, path: str, expected: str) -> None:
    answer = request(server, path)
    assert (answer.status, answer.headers["content-type"]) == (200, expected)


def test_a_range_gets_206_with_its_bytes(server) -> None:
    data = bytes(range(256)) * 4
    answer = request(server, "/data.bin", headers="Range: bytes=10-19\r\n")
    assert answer.headers["status-line"] == "HTTP/1.1 206 Partial Content"
    assert answer.body == data[10:20]
    assert answer.headers["content-range"] == f"bytes 10-19/{len(data)}"
    assert answer.headers["content-length"] == "10"
    suffix = request(server, "/data.bin", headers="Range: bytes=-5\r\n")
    assert (suffix.status, suffix.body) == (206, data[-5:])


def test_a_range_past_the_end_gets_416_with_the_size(server) -> None:
    answer = request(server, "/data.bin", headers="Range: bytes=5000-\r\n")
    assert answer.status == 416
    assert answer.headers["content-range"] == "bytes */1024"
    assert answer.body == b"Request Range Not Satisfiable\r\n"


def test_head_gets_the_head_only(server) -> None:
    answer = request(server, "/index.html", method="HEAD")
    assert answer.status == 200 and answer.body == b""
    assert answer.headers["content-length"] == "20"


@pytest.mark.parametrize("path", ["/outside-link", "/sub", "/sub/", "/missing.html"])
def test_what_is_not_a_regular_file_inside_the_webroot_is_404(server, path: str) -> None:
    answer = request(server, path)
    assert answer.status == 404
    assert b"404 - The file you requested could not be found" in answer.body


def test_a_path_climbing_out_is_refused(server) -> None:
    answer = request(server, "/sub/../../secret")
    assert answer.status == 400 and b"outside the webroot" not in answer.body


def test_a_live_mount_wins_over_a_file_of_the_same_name(server) -> None:
    source = Source(server.host, server.port, "/song.mp3", content_type="audio/mpeg")
    assert source.accepted
    source.send_pattern(16 * 1024)
    listener = Listener(server.host, server.port, "/song.mp3").start()
    source.send_pattern(16 * 1024)
    wait_for(lambda: len(listener.body) >= 16 * 1024, 10, "the stream")
    assert listener.header("Content-Type") == "audio/mpeg" and bytes(listener.body[:8]) != b"ID3 not "
    listener.close()
    source.close()
    wait_for(lambda: request(server, "/song.mp3").body == b"ID3 not a stream", 10,
             "the file once the mount is gone")


def test_a_large_download_does_not_hold_up_the_worker(server) -> None:
    with socket.create_connection((server.host, server.port)) as slow:
        slow.sendall(b"GET /big.bin HTTP/1.0\r\n\r\n")
        head = slow.recv(4096)
        assert head.startswith(b"HTTP/1.0 200 OK") and f"Content-Length: {BIG}".encode() in head
        # the download is stuck on a full socket; the one worker still answers others
        assert request(server, "/index.html").status == 200
        got = len(head) - head.index(b"\r\n\r\n") - 4
        slow.settimeout(20)
        while got < BIG:
            chunk = slow.recv(1024 * 1024)
            assert chunk, f"closed after {got} bytes"
            got += len(chunk)
    assert got == BIG


# ---- aliases --------------------------------------------------------------------------------


def test_an_alias_serves_its_destination(server) -> None:
    assert request(server, "/about").body == b"<html>fanout</html>\n"


def test_an_alias_goes_before_the_admin_routes(server) -> None:
    answer = request(server, "/stats", headers=f"Authorization: {ADMIN}\r\n")
    assert answer.status == 200 and answer.body.startswith(b"<?xml")
    assert b"<icestats>" in answer.body


def test_an_alias_with_a_bind_address_applies_only_on_that_socket(server) -> None:
    assert request(server, "/second-only", host=SECOND_ADDRESS, port=second_port(server)).status == 200
    assert request(server, "/second-only").status == 404


def test_an_alias_for_another_port_does_not_apply(server) -> None:
    assert request(server, "/port-one").status == 404


def test_an_alias_for_this_port_and_fileserve_off_after_a_reload(server, place: Path) -> None:
    """Last: it reloads the module's server (an alias for the port it was bound to, and
    <fileserve>0), as an operator edits the file and sends SIGHUP."""
    aliases = f'<alias source="/this-port" destination="/index.html" port="{server.port}"/>'
    (place / "icecast.xml").write_text(config(place / "web", place / "mime.types", aliases, 0))
    reloads = server.output().count("configuration reloaded")
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: server.output().count("configuration reloaded") > reloads, 10, "the reload")
    wait_for(lambda: request(server, "/index.html").status == 404, 10, "fileserve 0 in the worker")
    assert request(server, "/this-port").status == 404  # the destination is a file: none served
    (place / "icecast.xml").write_text(config(place / "web", place / "mime.types", aliases, 1))
    server.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: request(server, "/this-port").status == 200, 10, "the alias of this port")
    assert request(server, "/this-port", host=SECOND_ADDRESS, port=second_port(server)).status == 404


def _http_date(when: float) -> str:
    from email.utils import formatdate
    return formatdate(when, usegmt=True)
