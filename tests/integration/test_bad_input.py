"""Every bad-input answer of sources and listeners, as Icecast 2.4.4 gives it (§4, §5)."""
from __future__ import annotations

import socket

import pytest

from tests.support.clients import Listener, Source, basic, raw_request, read_all
from tests.support.server import SOURCE_PASSWORD, icecast_xml, start_fanout
from tests.support.waiting import wait_for
from tests.support.clients import status_and_body

NOT_FOUND_BODY = (b"<html><head><title>Error 404</title></head><body><b>404 - The file you "
                  b"requested could not be found</b></body></html>\r\n")

MOUNTS = """
<mount><mount-name>/limited</mount-name><max-listeners>1</max-listeners></mount>
<mount><mount-name>/own</mount-name><username>dj</username><password>djpass</password></mount>
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_fanout(icecast_xml(sources=2, mounts=MOUNTS),
                       tmp_path_factory.mktemp("bad"), workers=2)
    yield srv
    assert srv.stop() == 0, srv.output()


def test_unknown_mount_is_404_with_icecasts_page(server):
    answer = raw_request(server.host, server.port, b"GET /missing HTTP/1.0\r\n\r\n")
    status, body = status_and_body(answer)
    assert status == b"HTTP/1.0 404 File Not Found"
    assert b"Content-Type: text/html; charset=utf-8\r\n" in answer
    assert body == NOT_FOUND_BODY


def test_source_with_wrong_password_gets_401_challenge(server):
    source = Source(server.host, server.port, "/x", password="wrong")
    status, body = status_and_body(source.response + read_all(source.sock))
    assert status == b"HTTP/1.0 401 Authentication Required"
    assert b'WWW-Authenticate: Basic realm="Icecast2 Server"' in source.response
    assert body == b"You need to authenticate\r\n"
    wait_for(lambda: "You need to authenticate (401)" in server.output(), 5, "one log line")


def test_source_without_credentials_gets_401(server):
    answer = raw_request(server.host, server.port,
                         b"SOURCE /x ICE/1.0\r\nContent-Type: audio/mpeg\r\n\r\n")
    assert status_and_body(answer)[0] == b"HTTP/1.0 401 Authentication Required"


def test_mount_password_replaces_the_global_one(server):
    assert not Source(server.host, server.port, "/own").accepted
    own = Source(server.host, server.port, "/own", user="dj", password="djpass")
    assert own.accepted, own.response
    own.close()


def test_second_source_on_a_mount_gets_403_in_use(server):
    first = Source(server.host, server.port, "/busy")
    assert first.accepted
    second = Source(server.host, server.port, "/busy")
    status, body = status_and_body(second.response + read_all(second.sock))
    assert status == b"HTTP/1.0 403 Forbidden"
    assert body == b"Mountpoint in use"
    first.close()


def test_too_many_sources_gets_403(server):
    first = Source(server.host, server.port, "/s1")
    second = Source(server.host, server.port, "/s2")
    assert first.accepted and second.accepted
    third = Source(server.host, server.port, "/s3")
    status, body = status_and_body(third.response + read_all(third.sock))
    assert (status, body) == (b"HTTP/1.0 403 Forbidden", b"too many sources connected")
    first.close()
    second.close()


def test_put_without_content_type_gets_403(server):
    source = Source(server.host, server.port, "/ct", content_type=None)
    status, body = status_and_body(source.response + read_all(source.sock))
    assert (status, body) == (b"HTTP/1.0 403 Forbidden", b"No Content-type given")


def test_source_without_content_type_is_accepted_as_mpeg(server):
    source = Source(server.host, server.port, "/legacy", method="SOURCE", content_type=None,
                    version="ICE/1.0")
    assert source.accepted, source.response
    source.close()


def test_expect_100_continue_is_answered_after_auth(server):
    source = Source(server.host, server.port, "/cont", expect_continue=True)
    assert source.response == (b"HTTP/1.1 100 Continue\r\nContent-Length: 0\r\n\r\n"
                               b"HTTP/1.0 200 OK\r\n\r\n")
    source.close()


@pytest.mark.parametrize("path", ["//double", "/a/../b", "/a/./b", "noslash"])
def test_source_with_a_bad_mount_path_is_refused(server, path):
    answer = raw_request(server.host, server.port,
                         f"SOURCE {path} HTTP/1.0\r\nAuthorization: {basic('source', SOURCE_PASSWORD)}"
                         f"\r\n\r\n".encode())
    assert status_and_body(answer)[0] == b"HTTP/1.0 400 Bad Request"


def test_second_listener_over_max_listeners_gets_403(server):
    source = Source(server.host, server.port, "/limited")
    source.send(b"x" * 8192)
    first = wait_for(lambda: _listener_if_ok(server, "/limited"), 5, "a listener on /limited")
    wait_for(lambda: "max listeners reached" in _get(server, "/limited").decode(), 5,
             "the 403 for the second listener")
    answer = _get(server, "/limited")
    assert status_and_body(answer) == (b"HTTP/1.0 403 Forbidden", b"max listeners reached")
    first.close()
    source.close()


def test_oversized_head_gets_400_and_other_clients_are_untouched(server):
    huge = b"GET /x HTTP/1.0\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
    answer = raw_request(server.host, server.port, huge)
    assert status_and_body(answer)[0] == b"HTTP/1.0 400 Bad Request"
    assert status_and_body(raw_request(server.host, server.port, b"GET /y HTTP/1.0\r\n\r\n"))[0] \
        == b"HTTP/1.0 404 File Not Found"


def test_garbage_request_line_gets_400(server):
    answer = raw_request(server.host, server.port, b"\x16\x03\x01garbage\r\n\r\n")
    assert status_and_body(answer)[0] == b"HTTP/1.0 400 Bad Request"


def test_post_is_an_unknown_request(server):
    answer = raw_request(server.host, server.port, b"POST /x HTTP/1.0\r\n\r\n")
    assert status_and_body(answer)[0] == b"HTTP/1.0 400 Bad Request"


def test_silent_client_is_closed_after_header_timeout(server):
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(b"GET /x HTTP/1.0\r\n")  # never finishes its head
        assert read_all(sock) == b""  # closed by the server (header-timeout 3 s), no answer


def test_silent_source_is_disconnected_after_source_timeout(server):
    source = Source(server.host, server.port, "/quiet")
    assert source.accepted
    source.sock.settimeout(10)
    assert read_all(source.sock) == b""  # source-timeout 3 s: the server closes
    wait_for(lambda: "sent nothing for 3s" in server.output(), 5, "the timeout log line")


def test_head_request_gets_the_head_only(server):
    source = Source(server.host, server.port, "/headme")
    source.send(b"y" * 4096)
    wait_for(lambda: _get(server, "/headme").startswith(b"HTTP/1.0 200"), 5, "the mount")
    answer = raw_request(server.host, server.port, b"HEAD /headme HTTP/1.0\r\n\r\n")
    status, body = status_and_body(answer)
    assert status == b"HTTP/1.0 200 OK" and body == b""
    source.close()


def _get(server, mount: str) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(f"GET {mount} HTTP/1.0\r\n\r\n".encode())
        sock.settimeout(1)
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < 200:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        except socket.timeout:
            pass
        return data


def _listener_if_ok(server, mount: str) -> Listener | None:
    listener = Listener(server.host, server.port, mount)
    try:
        listener.start()
    except AssertionError:
        return None
    if listener.head.startswith(b"HTTP/1.0 200"):
        return listener
    listener.close()
    return None
