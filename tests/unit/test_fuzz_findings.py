"""Inputs the fuzz pass (tests/adversarial/test_fuzz.py) found, pinned one by one.

Each of these once raised an exception its parser does not document (ValueError from
``int()`` past 4300 digits, from ``urlsplit``, from xmltodict; UnicodeError from the idna
codec), let a decoded control character through, or backtracked for seconds on a long
name. Each test names the behaviour now.
"""
from __future__ import annotations

import random

import pytest

from fanout.config import ConfigError, parse_config
from fanout.config.mountglob import mount_matches
from fanout.protocol.errors import ProtocolError
from fanout.protocol.http import parse_head, wants_icy_metadata
from fanout.protocol.listener_auth import read_verdict
from fanout.protocol.numbers import LONG_MAX, saturated_int
from fanout.protocol.redirect import Registration, parse_registration
from fanout.protocol.streamlist import ListedMount, parse_streamlist
from fanout.protocol.upstream import Location, parse_location, parse_response_head

# One digit more than Python's int() reads from text.
HUGE = "1" * 4301


# ---- numbers ----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "value"), [
    ("0", 0), ("+5", 5), ("-0007", -7), ("9223372036854775807", LONG_MAX),
    ("9223372036854775808", LONG_MAX), (HUGE, LONG_MAX), ("-" + HUGE, -LONG_MAX), ("0" * 5000 + "3", 3),
])
def test_saturated_int_clamps_at_long_max_like_strtol(text: str, value: int) -> None:
    assert saturated_int(text) == value


@pytest.mark.parametrize("text", ["", "+", "\xb2", "\u0661", " 1", "1x"])
def test_saturated_int_refuses_anything_but_sign_and_ascii_digits(text: str) -> None:
    with pytest.raises(ValueError):
        saturated_int(text)


# ---- request heads ----------------------------------------------------------------------

def test_icy_metadata_with_thousands_of_digits_is_read_like_atoi() -> None:
    request = parse_head(f"GET / HTTP/1.0\r\nIcy-MetaData: {HUGE}".encode())
    assert wants_icy_metadata(request) is True
    assert wants_icy_metadata(parse_head(b"GET / HTTP/1.0\r\nIcy-MetaData: " + b"0" * 5000)) is False


@pytest.mark.parametrize(("rport", "interval", "expected"), [
    ("\xb2", "10", None),  # str.isdigit() is True for "²", int() refuses it
    ("\u0661\u0662", "10", None),  # Arabic-Indic digits are not a port either
    ("8000", HUGE, Registration("h", 8000, LONG_MAX)),  # saturated: now + interval stays a float
    (HUGE, "10", None),
])
def test_slave_registration_numbers_never_raise(rport: str, interval: str,
                                                expected: Registration | None) -> None:
    query = [("rserver", "h"), ("rport", rport), ("interval", interval)]
    assert parse_registration(query) == expected


# ---- upstream answers -------------------------------------------------------------------

def test_upstream_metaint_with_thousands_of_digits_saturates() -> None:
    head = parse_response_head(f"ICY 200 OK\r\nicy-metaint: {HUGE}".encode())
    assert head.metaint == LONG_MAX


@pytest.mark.parametrize("location", [
    "http://h:\xb2/x",  # Latin-1 superscript two: isdigit() but not int()
    "http://h:0/x", "http://h:65536/x", "http://h:99999/x", "http://h:/x",
    "http://a..b/x", "http://" + "a" * 64 + "/x",  # the idna codec raises UnicodeError for these
])
def test_redirect_to_an_unusable_port_or_host_is_a_protocol_error(location: str) -> None:
    with pytest.raises(ProtocolError):
        parse_location(location)


def test_redirect_to_the_highest_port_is_followed() -> None:
    assert parse_location("http://h:65535/x") == Location("h", 65535, "/x")


def test_auth_time_limit_with_thousands_of_digits_saturates() -> None:
    head = f"HTTP/1.1 200 OK\r\nicecast-auth-user: 1\r\nicecast-auth-timelimit: {HUGE}\r\n\r\n"
    verdict = read_verdict(head.encode(), "icecast-auth-user: 1\r\n", "icecast-auth-timelimit:")
    assert (verdict.accepted, verdict.timelimit) == (True, LONG_MAX)


# ---- stream lists -----------------------------------------------------------------------

def test_streamlist_line_urlsplit_refuses_is_skipped_with_a_warning() -> None:
    listing = parse_streamlist(b"//[\r\n/ok\r\n")
    assert listing.mounts == (ListedMount("/ok", "/ok"),)
    assert listing.examples == ("line 1: not a URL path: '//['",)


@pytest.mark.parametrize("line", [
    b"/%0d%0aX-Injected:%20yes",  # would split our relay request line and forge log lines
    b"/admin/streams?mount=/a%0d%0ab",
    b"/a%00b", b"/a%09b",
    b"/a/./b", b"/a//b", b"/a/%2e%2e/b",  # segments a source's mount may not have either
])
def test_streamlist_mount_that_decodes_to_an_invalid_mount_path_is_skipped(line: bytes) -> None:
    listing = parse_streamlist(line + b"\r\n")
    assert listing.mounts == ()
    assert listing.skipped == 1
    assert listing.examples[0].startswith(("line 1: not a mount path: ",
                                           "line 1: control character in the mount name: "))


# ---- icecast.xml ------------------------------------------------------------------------

def test_integer_with_thousands_of_digits_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(f"<icecast><limits><clients>{HUGE}</clients></limits></icecast>")
    assert (caught.value.path, caught.value.expected) == ("icecast/limits/clients", "an integer >= 0")


@pytest.mark.parametrize(("text", "message"), [
    ('<!DOCTYPE icecast [<!ENTITY e "x">]><icecast><hostname>&e;</hostname></icecast>',
     "entities are disabled"),
    ('<?xml version="1.0" encoding="bogus"?><icecast/>', "unknown encoding: bogus"),
])
def test_entity_declarations_and_unknown_encodings_are_config_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text.encode(), source="icecast.xml")
    assert (caught.value.path, caught.value.value, caught.value.expected) == (
        "icecast.xml", message, "well-formed XML")


def test_auth_url_with_an_unclosed_ipv6_bracket_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config('<icecast><mount><mount-name>/a</mount-name><authentication type="url">'
                     '<option name="listener_add" value="http://[x/"/></authentication></mount></icecast>')
    assert caught.value.path == "icecast/mount[1]/authentication/option[1]/@value"


# ---- mount-name globs -------------------------------------------------------------------

def test_glob_with_several_stars_against_a_long_name_does_not_backtrack() -> None:
    # One "[^/]*" per star took 11 s for 2,000 "-" and minutes for 8,000 (a head holds that).
    assert mount_matches("/*-*-*.ogg", "/" + "-" * 8000) is False
    assert mount_matches("/*-*-*.ogg", "/" + "-" * 8000 + ".ogg") is True


def _reference_match(pattern: str, name: str) -> bool:
    """fnmatch(3) with FNM_PATHNAME for patterns of literals, "?" and "*" only."""
    if not pattern:
        return not name
    if pattern[0] == "*":
        return _reference_match(pattern[1:], name) or (
            bool(name) and name[0] != "/" and _reference_match(pattern, name[1:]))
    if not name or name[0] == "/" and pattern[0] == "?":
        return False
    return pattern[0] in ("?", name[0]) and _reference_match(pattern[1:], name[1:])


def test_glob_matches_like_fnmatch_with_fnm_pathname() -> None:
    rng = random.Random(9)
    for _ in range(3000):
        pattern = "/" + "".join(rng.choices("ab/*?", k=rng.randint(0, 7)))
        name = "/" + "".join(rng.choices("ab/", k=rng.randint(0, 7)))
        assert mount_matches(pattern, name) is _reference_match(pattern, name), (pattern, name)
