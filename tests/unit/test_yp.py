"""fanout.protocol.yp: the YP directory protocol of Icecast 2.4.4, bodies, answers, timing."""

from __future__ import annotations

import pytest

from fanout.protocol.errors import ProtocolError
from fanout.protocol.upstream import parse_response_head
from fanout.protocol.yp import (
    ADD_REFUSED_DELAY, FIRST_ADD_DELAY, FIRST_TOUCH_DELAY, MIN_TOUCH_INTERVAL, TITLE_TOUCH_DELAY,
    TITLE_TOUCH_MIN_GAP, TOUCH_REFUSED_DELAY, UNREACHABLE_DELAY, UNREACHABLE_SKIP, YpAnswer,
    YpEntry, YpListing, YpServer, after_add, after_touch, directory_unreachable, is_public,
    listen_url, listing_from_stats, listing_started, parse_answer, removal, render_add,
    render_remove, render_request, render_touch, title_changed, touch_max_listeners, yp_escape,
    yp_server, yp_song,
)

NOW = 1000.0
SID = "0b3c9c52-1a7d-4d0e-9c1e-6a0c8a3f1b2e"


def answer(head: str) -> YpAnswer:
    return parse_answer(parse_response_head(head.encode()))


# ---- bodies -------------------------------------------------------------------------------


def test_escape_keeps_only_letters_and_digits() -> None:
    assert yp_escape("Radio 1-2.x_y~") == "Radio%201%2d2%2ex%5fy%7e"
    assert yp_escape("été") == "%c3%a9t%c3%a9"  # UTF-8 bytes, lower-case hex
    assert yp_escape("") == ""


def test_add_body_is_2_4_4s_field_order_with_audio_info_last_and_crlf() -> None:
    listing = YpListing(listen_url=listen_url("radio.example", 8000, "/live.ogg"),
                        server_name="My Radio", server_type="application/ogg", genre="jazz",
                        description="Late jazz", url="http://radio.example/", subtype="vorbis",
                        bitrate="128", audio_info="channels=2;samplerate=44100",
                        cluster_password="c")
    assert render_add(listing) == (
        b"action=add&sn=My%20Radio&genre=jazz&cpswd=c&desc=Late%20jazz"
        b"&url=http%3a%2f%2fradio%2eexample%2f&listenurl=http%3a%2f%2fradio%2eexample%3a8000"
        b"%2flive%2eogg&type=application%2fogg&stype=vorbis&b=128"
        b"&channels%3d2%3bsamplerate%3d44100\r\n")


def test_add_body_with_nothing_known_keeps_every_field() -> None:
    assert render_add(YpListing(listen_url="http://h:8000/m")) == (
        b"action=add&sn=&genre=&cpswd=&desc=&url=&listenurl=http%3a%2f%2fh%3a8000%2fm"
        b"&type=&stype=&b=&\r\n")


def test_touch_and_remove_bodies() -> None:
    assert render_touch(SID, "A - B", 3, 100, "mp3") == (
        f"action=touch&sid={SID}&st=A%20%2d%20B&listeners=3&max_listeners=100&stype=mp3\r\n").encode()
    assert render_remove(SID) == f"action=remove&sid={SID}".encode()


@pytest.mark.parametrize("artist, title, song", [
    ("A", "B", "A - B"), (None, "B", "B"), ("A", None, "A - "), (None, None, ""),
])
def test_song_joins_artist_and_title_as_2_4_4(artist: str | None, title: str | None, song: str) -> None:
    assert yp_song(artist, title) == song


def test_max_listeners_falls_back_to_the_client_limit() -> None:
    assert touch_max_listeners(-1, 256) == 256
    assert touch_max_listeners(10, 256) == 10


def test_request_is_a_post_with_the_server_id_as_user_agent() -> None:
    body = render_remove(SID)
    request = render_request("http://dir.example:8080/cgi-bin/yp-cgi?x=1", body, "Icecast 2.4.4")
    assert request == (
        b"POST /cgi-bin/yp-cgi?x=1 HTTP/1.1\r\nHost: dir.example:8080\r\nUser-Agent: Icecast 2.4.4\r\n"
        b"Accept: */*\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


@pytest.mark.parametrize("url", ["ftp://dir.example/yp", "dir.example/yp", "http:///yp",
                                 "http://dir.example:http/yp"])
def test_request_needs_an_http_or_https_url(url: str) -> None:
    with pytest.raises(ProtocolError):
        render_request(url, b"", "x")


@pytest.mark.parametrize("url, server", [
    ("http://dir.xiph.org/cgi-bin/yp-cgi", YpServer("dir.xiph.org", 80, False)),
    ("https://dir.example/yp", YpServer("dir.example", 443, True)),
    ("http://127.0.0.1:8080/yp", YpServer("127.0.0.1", 8080, False)),
])
def test_where_a_yp_url_points(url: str, server: YpServer) -> None:
    assert yp_server(url) == server


STATS = {"listenurl": "http://radio.example:8000/live", "server_name": "Radio",
         "server_type": "audio/mpeg", "genre": "jazz", "server_description": "Live",
         "server_url": "http://radio.example/", "bitrate": "128",
         "audio_info": "bitrate=128;channels=2", "public": "1", "title": "not listed"}


def test_a_listing_is_made_of_the_mounts_stats() -> None:
    assert listing_from_stats(STATS, "cluster") == YpListing(
        "http://radio.example:8000/live", "Radio", "audio/mpeg", "jazz", "Live",
        "http://radio.example/", "", "128", "bitrate=128;channels=2", "cluster")
    assert listing_from_stats({"listenurl": "http://h:1/m"}, None) == YpListing("http://h:1/m")


@pytest.mark.parametrize("public, listed", [("1", True), ("0", False), ("2", True), ("yes", False),
                                            (" 1", True), (None, False)])
def test_public_is_read_as_a_number(public: str | None, listed: bool) -> None:
    stats = {} if public is None else {"public": public}
    assert is_public(stats) is listed


# ---- answers ------------------------------------------------------------------------------


def test_successful_add_answer() -> None:
    got = answer(f"HTTP/1.1 200 OK\r\nYPResponse: 1\r\nYPMessage: Successfully Added\r\nSID: {SID}\r\n"
                 "TouchFreq: 200")
    assert got == YpAnswer(True, SID, 200, "Successfully Added")


def test_refusal_answer_whatever_the_status() -> None:
    assert answer("HTTP/1.1 200 OK\r\nYPResponse: 0\r\nYPMessage: Not enough arguments\r\nSID: -1") == \
        YpAnswer(False, "-1", None, "Not enough arguments")
    assert answer("HTTP/1.1 500 Oops\r\nypresponse: 1").ok  # 2.4.4 looks at the header only
    assert not answer("HTTP/1.1 200 OK").ok


@pytest.mark.parametrize("value, seconds", [("200", 200), ("5", MIN_TOUCH_INTERVAL),
                                            ("soon", MIN_TOUCH_INTERVAL), ("45s", 45)])
def test_touch_freq_is_at_least_30(value: str, seconds: int) -> None:
    assert answer(f"HTTP/1.1 200 OK\r\nYPResponse: 1\r\nTouchFreq: {value}").touch_interval == seconds


@pytest.mark.parametrize("sid", ["a&b=c", "x" * 129, "a b"])
def test_a_sid_that_could_break_a_body_is_not_used(sid: str) -> None:
    assert answer(f"HTTP/1.1 200 OK\r\nYPResponse: 1\r\nSID: {sid}").sid is None


# ---- timing -------------------------------------------------------------------------------


def test_a_public_mount_is_added_a_minute_later() -> None:
    assert listing_started(NOW, 30) == YpEntry("add", NOW + FIRST_ADD_DELAY, 30)


def test_successful_add_touches_5_s_later_at_the_directorys_interval() -> None:
    entry = after_add(listing_started(NOW, 30), YpAnswer(True, SID, 200), NOW)
    assert entry == YpEntry("touch", NOW + FIRST_TOUCH_DELAY, 200, SID)
    assert after_add(listing_started(NOW, 45), YpAnswer(True, SID), NOW).touch_interval == 45


def test_refused_or_unanswered_add_is_retried_later() -> None:
    entry = listing_started(NOW, 30)
    assert after_add(entry, YpAnswer(False, "-1"), NOW) == YpEntry("add", NOW + ADD_REFUSED_DELAY, 30)
    assert after_add(entry, YpAnswer(True, None), NOW).due == NOW + ADD_REFUSED_DELAY  # no SID
    assert after_add(entry, None, NOW) == YpEntry("add", NOW + UNREACHABLE_DELAY, 30)


def test_touches_repeat_at_the_interval() -> None:
    entry = YpEntry("touch", NOW, 60, SID)
    assert after_touch(entry, YpAnswer(True), NOW) == YpEntry("touch", NOW + 60, 60, SID, NOW)
    assert after_touch(entry, YpAnswer(True, touch_interval=90), NOW).due == NOW + 90


def test_refused_touch_adds_again_after_20_minutes_or_the_interval() -> None:
    assert after_touch(YpEntry("touch", NOW, 60, SID), YpAnswer(False), NOW) == \
        YpEntry("add", NOW + TOUCH_REFUSED_DELAY, 60)
    assert after_touch(YpEntry("touch", NOW, 3600, SID), YpAnswer(False), NOW).due == NOW + 3600
    assert after_touch(YpEntry("touch", NOW, 60, SID), None, NOW) == \
        YpEntry("add", NOW + UNREACHABLE_DELAY, 60)


def test_other_listings_of_an_unreachable_directory_wait_longer() -> None:
    assert directory_unreachable(YpEntry("touch", NOW + 10, 60, SID)) == \
        YpEntry("add", NOW + 10 + UNREACHABLE_SKIP, 60)


def test_title_change_touches_soon_unless_a_touch_was_recent() -> None:
    entry = YpEntry("touch", NOW + 500, 600, SID, last_touch=NOW - 100)
    assert title_changed(entry, NOW).due == NOW + TITLE_TOUCH_DELAY
    recent = YpEntry("touch", NOW + 500, 600, SID, last_touch=NOW - TITLE_TOUCH_MIN_GAP)
    assert title_changed(recent, NOW) == recent
    adding = listing_started(NOW, 30)
    assert title_changed(adding, NOW) == adding
    due_soon = YpEntry("touch", NOW + 1, 600, SID)
    assert title_changed(due_soon, NOW) == due_soon


def test_removal_only_for_a_listed_entry() -> None:
    assert removal(YpEntry("touch", NOW, 30, SID)) == render_remove(SID)
    assert removal(listing_started(NOW, 30)) is None
