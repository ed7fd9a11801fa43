"""Attacks on the web side cost only the attacker (issue 11: admin UI, status events).

- A page of another site making the admin's browser change something (the browser sends
  the admin's Basic credentials along): refused 403 before any handler runs, by POST
  (a form) and by GET (an <img>), and nothing changed.
- A form too large (413, not read), a form that never comes (400 after
  <header-timeout>), a POST without a length (411).
- A flood of status event streams: at most MAX_STREAMS per worker (503 beyond).

Each test asserts the exact answer and log line, and that a Bystander is untouched.
"""
from __future__ import annotations

import socket

import pytest

from fanout.protocol.admin_ui import CROSS_SITE_MESSAGE, MAX_FORM_BYTES
from fanout.worker.web import STREAMS_FULL
from fanout.worker.webfeed import MAX_STREAMS
from tests.support.admin import ADMIN, get
from tests.support.bystander import Bystander
from tests.support.clients import FillSource, raw_request, read_all
from tests.support.server import icecast_xml, start_fanout
from tests.support.waiting import wait_for

HEADER_TIMEOUT = 3  # tests.support.server's <header-timeout>
VICTIM = "/victim.mp3"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_fanout(icecast_xml(), tmp_path_factory.mktemp("web-attacks"), workers=1)
    yield srv
    assert srv.stop() == 0, srv.output()


@pytest.fixture(scope="module")
def everyone_else(server):
    with Bystander(server) as bystander:
        victim = FillSource(server, VICTIM, "audio/mpeg")
        yield bystander
        victim.close()


@pytest.fixture
def untouched(server, everyone_else):
    yield everyone_else
    everyone_else.assert_untouched()
    assert server.proc.poll() is None, server.output()


def answer(server, head: str, body: bytes = b"") -> tuple[str, bytes]:
    raw = raw_request(server.host, server.port, head.encode() + b"\r\n\r\n" + body)
    status, _, rest = raw.partition(b"\r\n")
    return status.decode(), rest.partition(b"\r\n\r\n")[2]


def victim_title(server) -> str | None:
    return get(server, f"/admin/stats?mount={VICTIM}").xml().findtext("source/title")


def logged(server, line: str) -> bool:
    """The server logged `line` (its output is read by a thread: the line may come a moment
    after the answer it goes with)."""
    return bool(wait_for(lambda: line in server.output(), 10, f"the log line {line!r}"))


def test_a_form_posted_from_another_site_is_refused_and_changes_nothing(server, untouched):
    body = b"song=pwned"
    status, text = answer(server, "\r\n".join([
        f"POST /admin/metadata.xsl?mount={VICTIM}&mode=updinfo HTTP/1.1", "Host: radio.example",
        f"Authorization: {ADMIN}", "Origin: https://evil.example", "Sec-Fetch-Site: cross-site",
        "Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]), body)
    assert (status, text) == ("HTTP/1.0 403 Forbidden", CROSS_SITE_MESSAGE.encode())
    wait_for(lambda: logged(server, f"127.0.0.1: {CROSS_SITE_MESSAGE} (403)"), 5, "the log line")
    assert victim_title(server) is None


def test_an_image_of_another_site_cannot_kill_a_source(server, untouched):
    status, text = answer(server, "\r\n".join([
        f"GET /admin/killsource?mount={VICTIM} HTTP/1.1", "Host: radio.example",
        f"Authorization: {ADMIN}", "Referer: https://evil.example/page.html"]))
    assert (status, text) == ("HTTP/1.0 403 Forbidden", CROSS_SITE_MESSAGE.encode())
    assert get(server, f"/admin/stats?mount={VICTIM}").xml().find("source") is not None


def test_a_form_larger_than_max_form_bytes_is_refused_unread(server, untouched):
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.sendall("\r\n".join([
        f"POST /admin/metadata.xsl?mount={VICTIM}&mode=updinfo HTTP/1.1",
        f"Authorization: {ADMIN}", "Content-Type: application/x-www-form-urlencoded",
        f"Content-Length: {MAX_FORM_BYTES + 1}", "", ""]).encode())  # the body never comes
    status, _, rest = read_all(sock).partition(b"\r\n")
    sock.close()
    assert status == b"HTTP/1.0 413 Request Entity Too Large"
    assert f"Form larger than {MAX_FORM_BYTES} bytes".encode() in rest
    assert logged(server, f"127.0.0.1: Form larger than {MAX_FORM_BYTES} bytes (413)")


def test_a_form_that_never_comes_is_given_up_after_the_header_timeout(server, untouched):
    status, text = answer(server, "\r\n".join([
        f"POST /admin/metadata.xsl?mount={VICTIM}&mode=updinfo HTTP/1.1",
        f"Authorization: {ADMIN}", "Content-Type: application/x-www-form-urlencoded",
        "Content-Length: 100"]), b"song=only")
    assert status == "HTTP/1.0 400 Bad Request"
    assert f"Form not sent within {HEADER_TIMEOUT}s".encode() in text
    assert logged(server, f"127.0.0.1: Form not sent within {HEADER_TIMEOUT}s (400)")
    assert victim_title(server) is None


def test_a_post_without_a_length_is_refused(server, untouched):
    status, _ = answer(server, "\r\n".join([
        f"POST /admin/killsource.xsl?mount={VICTIM} HTTP/1.1", f"Authorization: {ADMIN}",
        "Transfer-Encoding: chunked"]), b"0\r\n\r\n")
    assert status == "HTTP/1.0 411 Length Required"
    assert logged(server, "127.0.0.1: Content-Length required (411)")


def open_stream(server) -> tuple[socket.socket, bytes]:
    """An event stream, with the start of its answer."""
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.sendall(b"GET /status-events HTTP/1.1\r\nHost: x\r\n\r\n")
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = sock.recv(65536)
        if not chunk:
            break
        got += chunk
    return sock, got


def test_event_streams_beyond_max_streams_are_refused_503(server, untouched):
    streams = []
    try:
        for _ in range(MAX_STREAMS):
            sock, got = open_stream(server)
            streams.append(sock)
            assert got.startswith(b"HTTP/1.0 200 OK"), got
        refused, got = open_stream(server)
        refused.close()
        status, _, rest = got.partition(b"\r\n")
        assert status == b"HTTP/1.0 503 Service Unavailable" and STREAMS_FULL.encode() in rest
        wait_for(lambda: logged(server, f"127.0.0.1: status events refused: {MAX_STREAMS} "
                                        "streams open on this worker (the most)"), 5, "the line")
        assert logged(server, f"127.0.0.1: {STREAMS_FULL} (503)")
        streams.pop().close()

        def admitted() -> bool:  # the slot is free once the worker saw the close
            sock, got = open_stream(server)
            streams.append(sock)
            return got.startswith(b"HTTP/1.0 200 OK")
        wait_for(admitted, 20, "a stream admitted once one closed")
    finally:
        for sock in streams:
            sock.close()
