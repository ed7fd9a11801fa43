"""The one text rule (fanout.protocol.text): wire text round-trips byte-exactly; display
formats read non-UTF-8 as Latin-1 and carry no control character; log lines escape."""
from __future__ import annotations

import random
from urllib.parse import unquote

import pytest

from fanout.protocol.text import (
    charset_codec, decode_text, decode_title, display, from_wire, is_utf8, log_quoted,
    log_safe, readable, recode, to_wire, url_path,
)

LATIN1_NAME = b"caf\xe9"  # what an older encoder sends as Ice-Name
BAD_MOUNT = b"/\xff\xfd.mp3"


def random_bytes(rng: random.Random) -> bytes:
    return bytes(rng.randrange(256) for _ in range(rng.randrange(40)))


def test_any_bytes_round_trip_through_wire_text():
    rng = random.Random(9)
    for _ in range(2000):
        data = random_bytes(rng)
        assert to_wire(from_wire(data)) == data


def test_valid_utf8_reads_naturally_and_other_bytes_are_kept():
    assert from_wire("Björk".encode()) == "Björk" and is_utf8("Björk")
    assert from_wire(BAD_MOUNT) == "/\udcff\udcfd.mp3" and not is_utf8(from_wire(BAD_MOUNT))


def test_a_surrogate_no_bytes_stand_behind_becomes_a_question_mark():
    assert to_wire("a\ud800b") == b"a?b"


def test_a_value_that_is_not_utf8_reads_as_latin1_as_a_whole():
    assert readable(from_wire(LATIN1_NAME)) == "café"
    # One invalid byte switches the whole value: the valid "é" (C3 A9) is Latin-1 too.
    assert readable(from_wire("é".encode() + b"\xe9")) == "Ã©é"
    assert decode_text(LATIN1_NAME) == "café" and decode_text("café".encode()) == "café"


def test_display_is_latin1_for_non_utf8_and_replaces_every_control():
    assert display(from_wire(BAD_MOUNT)) == "/ÿý.mp3"
    assert display("a\r\nb\x00c\x7fd\x85e\tf\ufffe") == "a\ufffd\ufffdb\ufffdc\ufffdd\ufffde\ufffdf\ufffd"


def test_display_output_always_encodes_as_strict_utf8():
    rng = random.Random(3)
    for _ in range(2000):
        shown = display(from_wire(random_bytes(rng)))
        shown.encode("utf-8")
        assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in shown)


def test_log_safe_writes_non_utf8_bytes_and_controls_as_hex_escapes():
    assert log_safe(from_wire(b"GET /\xff")) == "GET /\\xff"
    assert log_safe("a\r\n[2026-01-01 00:00:00] ERROR forged") == (
        "a\\x0d\\x0a[2026-01-01 00:00:00] ERROR forged")
    assert log_safe("x\u2028y\u2029z\x85\x0b\x0c\x1c") == "x\\u2028y\\u2029z\\x85\\x0b\\x0c\\x1c"
    assert log_safe("Björk \\ \"ok\"") == "Björk \\ \"ok\""  # readable text stays as it is


def test_no_logged_value_can_make_a_second_line():
    rng = random.Random(5)
    for _ in range(2000):
        line = log_safe(from_wire(random_bytes(rng)))
        assert len(line.splitlines()) <= 1 and "\r" not in line
        line.encode("utf-8")


def test_log_quoted_also_escapes_the_quote_and_the_backslash():
    assert log_quoted('a"b\\c\x01' + from_wire(b"\xfe")) == "a\\x22b\\x5cc\\x01\\xfe"


def test_url_path_percent_encodes_what_a_path_cannot_hold_and_unquotes_back():
    assert url_path(from_wire(BAD_MOUNT)) == "/%FF%FD.mp3"
    assert url_path("/café 100%?#\"<x>") == "/café%20100%25%3F%23%22%3Cx%3E"
    assert url_path("/live-1_a.b~c!$&'()*+,;=:@") == "/live-1_a.b~c!$&'()*+,;=:@"
    assert url_path("/a\x85b\u2028c\uffff") == "/a%C2%85b%E2%80%A8c%EF%BF%BF"
    assert display(url_path("/a\x85\u2028")) == url_path("/a\x85\u2028")  # survives display
    rng = random.Random(7)
    for _ in range(2000):
        name = from_wire(random_bytes(rng))
        assert unquote(url_path(name), "utf-8", "surrogateescape") == name


@pytest.mark.parametrize("name, codec", [
    ("UTF-8", "utf-8"), ("ISO8859-1", "iso8859-1"), ("latin1", "iso8859-1"),
    ("windows-1251", "cp1251"),
    ("idna", None), ("punycode", None), ("unicode_escape", None), ("undefined", None),
    ("rot13", None), ("hex", None), ("base64", None), ("no-such-charset", None),
    ("a\x00b", None), ("", None), ("x" * 5000, None),
])
def test_charset_codec_knows_charsets_and_nothing_else(name, codec):
    assert charset_codec(name) == codec


def test_recode_converts_between_known_charsets():
    assert recode("Björk".encode(), "UTF-8", "ISO8859-1") == b"Bj\xf6rk"
    assert recode("東".encode(), "UTF-8", "ISO8859-1") == b"?"  # not in the target


@pytest.mark.parametrize("charset", ["idna", "bogus", "rot13", "a\x00", ""])
def test_recode_keeps_the_bytes_when_a_charset_is_unknown(charset):
    assert recode(b"a..b", charset, "ISO8859-1") == b"a..b"
    assert recode(b"a..b", "UTF-8", charset) == b"a..b"


def test_recode_keeps_the_bytes_when_they_are_not_in_the_charset_named():
    # Three bytes are no UTF-16: Icecast keeps a value it failed to convert as received.
    assert recode(b"abc", "UTF-16", "ISO8859-1") == b"abc"


def test_titles_on_a_default_mount_are_utf8_else_latin1():
    assert decode_title("Björk".encode(), "ISO8859-1") == "Björk"
    assert decode_title(b"Bj\xf6rk", "ISO8859-1") == "Björk"


def test_titles_on_a_mount_with_its_own_charset_are_read_in_it_when_they_fit():
    assert decode_title("Жанна".encode("cp1251"), "windows-1251") == "Жанна"
    assert decode_title(b"\xff\xfe", "UTF-8") == "ÿþ"  # not UTF-8 after all: Latin-1
    assert decode_title(b"a..b", "idna") == "a..b"  # no charset: the rule
