"""Talking to an upstream: request bytes, response heads, redirects."""
from __future__ import annotations

import pytest

from fanout.protocol.errors import ProtocolError
from fanout.protocol.upstream import (MAX_HEAD, Location, head_end, parse_location,
                                      parse_response_head, render_relay_request,
                                      render_streamlist_request)


def test_streamlist_request_is_the_2_4_4_bytes():
    assert render_streamlist_request("/admin/streamlist.txt", "relay", "hackme-rly") == (
        b"GET /admin/streamlist.txt HTTP/1.0\r\n"
        b"Authorization: Basic cmVsYXk6aGFja21lLXJseQ==\r\n\r\n")


def test_relay_request_carries_agent_host_with_port_and_icy_metadata():
    assert render_relay_request("/live.mp3", host="10.0.0.1", port=8000,
                                user_agent="Icecast 2.4.4") == (
        b"GET /live.mp3 HTTP/1.0\r\nUser-Agent: Icecast 2.4.4\r\nHost: 10.0.0.1:8000\r\n"
        b"Icy-MetaData: 1\r\n\r\n")


def test_relay_request_host_has_no_port_80_and_may_carry_credentials():
    request = render_relay_request("/x", host="h", port=80, user_agent="a",
                                   credentials=("relay", "pw"))
    assert b"Host: h\r\n" in request
    assert b"Authorization: Basic cmVsYXk6cHc=\r\n" in request


def test_icecast_head_is_parsed_with_icy_headers_and_metaint():
    head = parse_response_head(b"HTTP/1.0 200 OK\r\nContent-Type: audio/mpeg\r\n"
                               b"icy-name:lab\r\nicy-metaint:16000\r\nServer: Icecast 2.4.4")
    assert (head.status, head.ok, head.content_type, head.metaint) == (200, True, "audio/mpeg", 16000)
    assert head.icy_headers() == [("icy-name", "lab"), ("icy-metaint", "16000")]


def test_shoutcast_status_line_is_a_success():
    head = parse_response_head(b"ICY 200 OK\r\nicy-metaint:8192")
    assert (head.version, head.status, head.metaint) == ("ICY", 200, 8192)


def test_bad_status_line_is_a_protocol_error():
    with pytest.raises(ProtocolError):
        parse_response_head(b"garbage\r\n")


def test_metaint_is_read_like_atoi():
    assert parse_response_head(b"HTTP/1.0 200 OK\r\nicy-metaint: 12abc").metaint == 12
    assert parse_response_head(b"HTTP/1.0 200 OK\r\nicy-metaint: x").metaint == 0


@pytest.mark.parametrize("data, expected", [
    (b"HTTP/1.0 200 OK\r\n\r\nBODY", (15, 19)),
    (b"HTTP/1.0 200 OK\n\nBODY", (15, 17)),
    (b"HTTP/1.0 200 OK\r\nA: b\r\n", None),
])
def test_head_end_finds_the_blank_line(data, expected):
    assert head_end(data) == expected


def test_head_end_bounds_an_endless_head():
    with pytest.raises(ProtocolError):
        head_end(b"x" * (MAX_HEAD + 10))


def test_location_is_parsed_as_2_4_4_follows_it():
    assert parse_location("http://h:8001/a?b=1") == Location("h", 8001, "/a?b=1")
    assert parse_location("http://h") == Location("h", 80, "/")


def test_an_https_location_is_followed_over_tls_as_kh_does():
    assert parse_location("https://h:8443/a") == Location("h", 8443, "/a", tls=True)
    assert parse_location("https://h") == Location("h", 443, "/", tls=True)


@pytest.mark.parametrize("value", ["HTTPS://h/x", "HTTP://h/x", "ftp://h/x", "http://:80/x",
                                   "http://h:x/y"])
def test_unsupported_locations_are_refused(value):
    with pytest.raises(ProtocolError):
        parse_location(value)


def test_content_length_is_read_when_declared():
    assert parse_response_head(b"HTTP/1.0 200 OK\r\nContent-Length: 42").content_length() == 42
    assert parse_response_head(b"HTTP/1.0 200 OK").content_length() is None


@pytest.mark.parametrize("value", [b"-1", b"12x", b"\xb2", b"9" * 5000, b""])
def test_a_bad_content_length_is_a_protocol_error(value):
    head = parse_response_head(b"HTTP/1.0 200 OK\r\nContent-Length: " + value)
    with pytest.raises(ProtocolError):
        head.content_length()
