"""Response heads (fanout.protocol.responses), byte-exact to PROTOCOL.md §4.3, §5.2, §5.8
and the heads captured from Icecast 2.4.4 in WIRE.md §5."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

from fanout.protocol.http import HeadParser
from fanout.protocol.responses import (
    REASONS,
    http_date,
    listener_icy_headers,
    render_continue,
    render_error,
    render_listener_head,
    render_redirect,
    render_source_ok,
    render_text,
)

NOW = 1795238658.75  # Sat, 21 Nov 2026 05:24:18 GMT, the date in WIRE.md §5
SERVER = "Icecast 2.4.4"
DATE = b"Date: Sat, 21 Nov 2026 05:24:18 GMT\r\n"
NO_CACHE = b"Cache-Control: no-cache, no-store\r\nExpires: Mon, 26 Jul 1997 05:00:00 GMT\r\nPragma: no-cache\r\n"
LISTENER_HEAD = (
    b"HTTP/1.0 200 OK\r\nServer: Icecast 2.4.4\r\nConnection: Close\r\n" + DATE
    + b"Content-Type: audio/mpeg\r\n" + NO_CACHE
)


def listener_head(**overrides: object) -> bytes:
    arguments: dict[str, object] = dict(
        server_id=SERVER, now=NOW, content_type="audio/mpeg", extra_headers=(), icy_headers=(), metaint=0
    )
    arguments.update(overrides)
    return render_listener_head(**arguments)  # type: ignore[arg-type]


# --- dates ---------------------------------------------------------------------------


def test_http_date_matches_the_captured_head() -> None:
    assert http_date(NOW) == "Sat, 21 Nov 2026 05:24:18 GMT"


@pytest.mark.parametrize(
    ("now", "expected"),
    [(0, "Thu, 01 Jan 1970 00:00:00 GMT"), (869893200, "Sat, 26 Jul 1997 05:00:00 GMT"),
     (1709164800, "Thu, 29 Feb 2024 00:00:00 GMT"), (1703980799, "Sat, 30 Dec 2023 23:59:59 GMT")],
)
def test_http_date_uses_english_names_in_gmt(now: float, expected: str) -> None:
    assert http_date(now) == expected


# --- errors (§5.8) -------------------------------------------------------------------


def test_404_is_icecasts_html_page() -> None:
    assert render_error(404, "The file you requested could not be found", server_id=SERVER, now=NOW) == (
        b"HTTP/1.0 404 File Not Found\r\nServer: Icecast 2.4.4\r\nConnection: Close\r\n" + DATE
        + b"Content-Type: text/html; charset=utf-8\r\n" + NO_CACHE + b"\r\n"
        + b"<html><head><title>Error 404</title></head><body>"
        b"<b>404 - The file you requested could not be found</b></body></html>\r\n"
    )


def test_400_is_an_html_page() -> None:
    response = render_error(400, "unknown request", server_id=SERVER, now=NOW)
    assert response.startswith(b"HTTP/1.0 400 Bad Request\r\n")
    assert response.endswith(
        b"\r\n\r\n<html><head><title>Error 400</title></head><body><b>400 - unknown request</b></body></html>\r\n"
    )


def test_500_is_an_html_page() -> None:
    response = render_error(500, "Internal error", server_id=SERVER, now=NOW)
    assert response.startswith(b"HTTP/1.0 500 Internal Server Error\r\n")
    assert b"Content-Type: text/html; charset=utf-8\r\n" in response
    assert response.endswith(b"<b>500 - Internal error</b></body></html>\r\n")


def test_403_is_the_plain_message() -> None:
    assert render_error(403, "max listeners reached", server_id=SERVER, now=NOW) == (
        b"HTTP/1.0 403 Forbidden\r\nServer: Icecast 2.4.4\r\nConnection: Close\r\n" + DATE
        + b"Content-Type: text/plain; charset=utf-8\r\n" + NO_CACHE + b"\r\nmax listeners reached"
    )


def test_401_challenges_with_the_icecast2_realm() -> None:
    assert render_error(401, "ignored", server_id=SERVER, now=NOW) == (
        b"HTTP/1.0 401 Authentication Required\r\nServer: Icecast 2.4.4\r\nConnection: Close\r\n" + DATE
        + b"Content-Type: text/plain; charset=utf-8\r\n"
        + b'WWW-Authenticate: Basic realm="Icecast2 Server"\r\n' + NO_CACHE
        + b"\r\nYou need to authenticate\r\n"
    )


def test_error_extra_headers_follow_pragma() -> None:
    response = render_error(
        403, "x", server_id=SERVER, now=NOW, extra_headers=[("Access-Control-Allow-Origin", "*"), ("X-A", "b")]
    )
    assert b"Pragma: no-cache\r\nAccess-Control-Allow-Origin: *\r\nX-A: b\r\n\r\nx" in response


def test_error_has_no_content_length() -> None:
    assert b"Content-Length" not in render_error(404, "x", server_id=SERVER, now=NOW)


def test_error_message_cannot_inject_html() -> None:
    assert b"<b>404 - /&lt;script&gt;</b>" in render_error(404, "/<script>", server_id=SERVER, now=NOW)


def test_error_bodies_are_valid_utf8_whatever_the_message_quotes() -> None:
    for status in (400, 403, 404):
        body = render_error(status, "/caf\udce9\x01", server_id=SERVER, now=NOW).split(b"\r\n\r\n")[1]
        assert "café\ufffd" in body.decode("utf-8")


def test_every_reason_phrase_renders() -> None:
    for status, reason in REASONS.items():
        line = render_error(status, "m", server_id=SERVER, now=NOW).split(b"\r\n")[0]
        assert line == f"HTTP/1.0 {status} {reason}".encode()


# --- sources (§4.3) ------------------------------------------------------------------


def test_source_ok_is_a_bare_200() -> None:
    assert render_source_ok() == b"HTTP/1.0 200 OK\r\n\r\n"


def test_continue_is_icecasts_interim_answer() -> None:
    assert render_continue() == b"HTTP/1.1 100 Continue\r\nContent-Length: 0\r\n\r\n"


def test_continue_then_ok_is_the_captured_63_bytes() -> None:
    assert len(render_continue() + render_source_ok()) == 63


# --- icy header mapping (§5.2) ---------------------------------------------------------


def test_ice_audio_info_with_bitrate_gives_icy_br_and_itself() -> None:
    headers = [("ice-audio-info", "samplerate=44100;bitrate=128;channels=2")]
    assert listener_icy_headers(headers, None) == [
        ("icy-br", "128"),
        ("ice-audio-info", "samplerate=44100;bitrate=128;channels=2"),
    ]


def test_ice_audio_info_without_bitrate_gives_only_itself() -> None:
    headers = [("ice-audio-info", "samplerate=44100;channels=2")]
    assert listener_icy_headers(headers, None) == [("ice-audio-info", "samplerate=44100;channels=2")]


def test_ice_audio_info_first_bitrate_wins() -> None:
    headers = [("ice-audio-info", "bitrate=96;bitrate=128")]
    assert listener_icy_headers(headers, None)[0] == ("icy-br", "96")


def test_ice_audio_info_bitrate_needs_digits() -> None:
    headers = [("ice-audio-info", "bitrate=high;x=1")]
    assert listener_icy_headers(headers, None) == [("ice-audio-info", "bitrate=high;x=1")]


def test_ice_name_becomes_icy_name() -> None:
    assert listener_icy_headers([("ice-name", "My Radio")], None) == [("icy-name", "My Radio")]


def test_stream_name_overrides_ice_name() -> None:
    assert listener_icy_headers([("ice-name", "My Radio")], "Configured") == [("icy-name", "Configured")]


def test_stream_name_does_not_override_icy_name() -> None:
    assert listener_icy_headers([("icy-name", "Shout Radio")], "Configured") == [("icy-name", "Shout Radio")]


def test_ice_public_becomes_icy_pub() -> None:
    assert listener_icy_headers([("ice-public", "1")], None) == [("icy-pub", "1")]


def test_ice_bitrate_becomes_icy_br() -> None:
    assert listener_icy_headers([("ice-bitrate", "128")], None) == [("icy-br", "128")]


def test_other_ice_headers_become_icy() -> None:
    headers = [("ice-genre", "jazz"), ("ice-url", "http://x"), ("ice-description", "d"), ("ice-private", "0")]
    assert listener_icy_headers(headers, None) == [
        ("icy-description", "d"),
        ("icy-genre", "jazz"),
        ("icy-private", "0"),
        ("icy-url", "http://x"),
    ]


def test_icy_headers_pass_unchanged() -> None:
    headers = [("icy-notice1", "<BR>hi"), ("icy-br", "64"), ("icy-irc", "#x")]
    assert listener_icy_headers(headers, None) == [("icy-br", "64"), ("icy-irc", "#x"), ("icy-notice1", "<BR>hi")]


def test_ice_bitrate_and_audio_info_give_two_icy_br() -> None:
    headers = [("ice-bitrate", "128"), ("ice-audio-info", "bitrate=128")]
    assert listener_icy_headers(headers, None) == [
        ("icy-br", "128"),
        ("ice-audio-info", "bitrate=128"),
        ("icy-br", "128"),
    ]


def test_password_metaint_and_other_headers_are_dropped() -> None:
    headers = [("ice-password", "hackme"), ("icy-metaint", "8192"), ("content-type", "audio/mpeg"),
               ("x-audiocast-name", "x"), ("authorization", "Basic eA=="), ("user-agent", "butt")]
    assert listener_icy_headers(headers, None) == []


def test_mapping_sorts_by_source_name_and_keeps_duplicates_in_order() -> None:
    headers = [("icy-pub", "1"), ("ice-public", "0"), ("icy-genre", "b"), ("icy-genre", "a")]
    assert listener_icy_headers(headers, None) == [
        ("icy-pub", "0"), ("icy-genre", "b"), ("icy-genre", "a"), ("icy-pub", "1"),
    ]


def test_mapping_lower_cases_names() -> None:
    assert listener_icy_headers([("Ice-Genre", "x"), ("ICY-URL", "u")], None) == [("icy-genre", "x"), ("icy-url", "u")]


def test_mapping_strips_crlf_from_values() -> None:
    headers = [("ice-name", "Radio\r\nSet-Cookie: evil"), ("icy-genre", "a\nb")]
    assert listener_icy_headers(headers, "Conf\r\nX: y") == [("icy-name", "ConfX: y"), ("icy-genre", "ab")]


# --- listener head (§5.2, WIRE.md §5) ------------------------------------------------


def ffmpeg_source_headers() -> tuple[tuple[str, str], ...]:
    """The headers of ffmpeg's PUT, as the parser gives them (checked in test_http)."""
    expected = runpy.run_path(str(Path(__file__).parent / "requests" / "004_ffmpeg_put.py"))
    headers: tuple[tuple[str, str], ...] = expected["request"]["headers"]
    return headers


CAPTURED_ICY_LINES = (
    b"icy-description:interop lab\r\nicy-genre:lab\r\nicy-name:lab /live.mp3\r\nicy-pub:1\r\nicy-metadata:1\r\n"
)


def test_listener_head_from_ffmpeg_source_matches_capture() -> None:
    icy = listener_icy_headers(ffmpeg_source_headers(), None)
    assert listener_head(icy_headers=icy) == LISTENER_HEAD + CAPTURED_ICY_LINES + b"\r\n"


def test_listener_head_with_metadata_ends_with_metaint() -> None:
    icy = listener_icy_headers(ffmpeg_source_headers(), None)
    assert listener_head(icy_headers=icy, metaint=16000) == (
        LISTENER_HEAD + CAPTURED_ICY_LINES + b"icy-metaint:16000\r\n\r\n"
    )


def test_listener_head_without_source_headers_is_the_base_set() -> None:
    assert listener_head() == LISTENER_HEAD + b"\r\n"


def test_ice_audio_info_line_keeps_its_space() -> None:
    icy = [("icy-br", "128"), ("ice-audio-info", "bitrate=128")]
    assert b"\r\nicy-br:128\r\nice-audio-info: bitrate=128\r\n" in listener_head(icy_headers=icy)


def test_listener_extra_headers_come_between_pragma_and_icy() -> None:
    head = listener_head(extra_headers=[("X-Global", "1"), ("X-Mount", "2")], icy_headers=[("icy-pub", "1")])
    assert head.endswith(b"Pragma: no-cache\r\nX-Global: 1\r\nX-Mount: 2\r\nicy-pub:1\r\n\r\n")


def test_flash_listener_gets_the_fake_content_length_before_metaint() -> None:
    head = listener_head(icy_headers=[("icy-pub", "1")], metaint=8192, flash=True)
    assert head.endswith(b"icy-pub:1\r\nContent-Length: 221183499\r\nicy-metaint:8192\r\n\r\n")


def test_msie_user_agent_gets_the_fake_content_length() -> None:
    head = listener_head(user_agent="Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1)")
    assert head.endswith(b"Pragma: no-cache\r\nContent-Length: 221183499\r\n\r\n")


def test_other_listeners_get_no_content_length() -> None:
    assert b"Content-Length" not in listener_head(user_agent="VLC/3.0.20")


def test_listener_content_type_has_no_charset() -> None:
    assert b"\r\nContent-Type: application/ogg\r\n" in listener_head(content_type="application/ogg")


def test_listener_status_line_can_be_chosen() -> None:
    assert listener_head(status_line="ICY 200 OK").startswith(b"ICY 200 OK\r\nServer: Icecast 2.4.4\r\n")


def test_listener_head_values_cannot_inject_headers() -> None:
    head = listener_head(extra_headers=[("X-A", "1\r\nSet-Cookie: x")], icy_headers=[("icy-name", "a\r\n\r\nb")])
    assert b"X-A: 1Set-Cookie: x\r\nicy-name:ab\r\n\r\n" in head


def test_non_utf8_source_bytes_reach_the_listener_unchanged() -> None:
    request = HeadParser().feed(b"SOURCE /x ICE/1.0\r\nice-genre: \xe9t\xe9\r\n\r\n")
    assert request is not None
    head = listener_head(icy_headers=listener_icy_headers(request.headers, None))
    assert b"\r\nicy-genre:\xe9t\xe9\r\n" in head


# --- redirect and text ---------------------------------------------------------------


def test_redirect_is_an_empty_302_with_location() -> None:
    assert render_redirect("http://relay1:8000/live.mp3?foo=bar", server_id=SERVER, now=NOW) == (
        b"HTTP/1.0 302 Found\r\nServer: Icecast 2.4.4\r\nConnection: Close\r\n" + DATE
        + b"Content-Type: text/html\r\nLocation: http://relay1:8000/live.mp3?foo=bar\r\nContent-Length: 0\r\n\r\n"
    )


def test_redirect_can_echo_http_1_1() -> None:
    assert render_redirect("http://a/", server_id=SERVER, now=NOW, version="1.1").startswith(b"HTTP/1.1 302 Found\r\n")


def test_text_response_has_content_length_last() -> None:
    body = b'<?xml version="1.0"?>\n<iceresponse/>\n'
    response = render_text(
        200, body, "text/xml; charset=utf-8", server_id=SERVER, now=NOW, extra_headers=[("X-A", "b")]
    )
    assert response == (
        b"HTTP/1.0 200 OK\r\nServer: Icecast 2.4.4\r\nConnection: Close\r\n" + DATE
        + b"Content-Type: text/xml; charset=utf-8\r\n" + NO_CACHE
        + b"X-A: b\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )


def test_text_response_can_carry_an_error_status() -> None:
    response = render_text(400, b"x", "text/plain", server_id=SERVER, now=NOW)
    assert response.startswith(b"HTTP/1.0 400 Bad Request\r\n") and response.endswith(b"Content-Length: 1\r\n\r\nx")
