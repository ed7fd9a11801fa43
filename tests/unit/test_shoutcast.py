"""The Shoutcast source handshake (fanout.protocol.shoutcast) and which listen socket an
inherited fd serves (fanout.worker.server.spec_of_listener).

Handshakes are fed whole, byte by byte and in seeded random splits: every way must give
the same password, header block and leftover.
"""
from __future__ import annotations

import random
from typing import Callable

import pytest

from fanout.config import ListenSocket
from fanout.protocol.errors import CLOSE_SILENTLY, ProtocolError
from fanout.protocol.http import MAX_HEAD_BYTES, Request
from fanout.protocol.shoutcast import (
    MAX_PASSWORD_LINE, NEED_DATA, OK2_REPLY, HandshakeParser, Password, password_matches,
)
from fanout.worker.server import spec_of_listener

SEEDS = (1, 2, 3)
DSP = (b"hackme\r\n"
       b"icy-name:My Station\r\nicy-genre:Rock\r\nicy-pub:1\r\nicy-br:128\r\n"
       b"icy-url:http://example.com/\r\nicy-irc:\r\n\r\n")
AUDIO = b"\xff\xfb\x90\x00audio"


def whole(raw: bytes, seed: int) -> list[bytes]:
    return [raw]


def byte_by_byte(raw: bytes, seed: int) -> list[bytes]:
    return [raw[i:i + 1] for i in range(len(raw))]


def random_splits(raw: bytes, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(raw)), k=rng.randint(1, 8)))
    return [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]


Splitter = Callable[[bytes, int], list[bytes]]
SPLITS: list[tuple[Splitter, int]] = [(whole, 0), (byte_by_byte, 0),
                                      *((random_splits, seed) for seed in SEEDS)]


def run(chunks: list[bytes], mount: str = "/stream") -> tuple[list[object], bytes]:
    """Feed chunks as the worker does; the events (NEED_DATA left out) and the leftover."""
    parser = HandshakeParser(mount)
    events: list[object] = []
    for chunk in chunks:
        parser.feed(chunk)
        while parser.state not in ("DONE", "ERROR"):
            event = parser.next_event()
            if event is NEED_DATA:
                break
            events.append(event)
    return events, parser.leftover


def handshake(raw: bytes, mount: str = "/stream") -> tuple[Password, Request, bytes]:
    events, leftover = run([raw], mount)
    password, request = events
    assert isinstance(password, Password) and isinstance(request, Request)
    return password, request, leftover


# --- the handshake -------------------------------------------------------------------


@pytest.mark.parametrize("splitter, seed", SPLITS, ids=lambda v: getattr(v, "__name__", v))
def test_any_split_gives_password_headers_and_audio(splitter, seed):
    events, leftover = run(splitter(DSP + AUDIO, seed))
    assert len(events) == 2
    password, request = events
    assert password == Password("hackme")
    assert isinstance(request, Request)
    assert request.headers == (("icy-name", "My Station"), ("icy-genre", "Rock"), ("icy-pub", "1"),
                               ("icy-br", "128"), ("icy-url", "http://example.com/"),
                               ("icy-irc", ""))
    assert leftover == AUDIO


def test_header_block_reads_as_a_source_request_for_the_mount():
    _, request, _ = handshake(DSP, mount="/dj set.mp3")
    assert (request.method, request.path, request.protocol, request.version) == (
        "SOURCE", "/dj set.mp3", "HTTP", "1.0")


def test_password_line_may_end_in_bare_lf_and_keeps_inner_spaces():
    password, _, _ = handshake(b" pass word \nicy-name:x\n\n")
    assert password.text == " pass word "


def test_password_is_reported_before_the_headers_arrive():
    parser = HandshakeParser("/stream")
    parser.feed(b"hackme\r\n")
    assert parser.next_event() == Password("hackme")
    assert parser.next_event() is NEED_DATA
    parser.feed(b"content-type:audio/aacp\r\n\r\n")
    request = parser.next_event()
    assert isinstance(request, Request) and request.header("content-type") == "audio/aacp"


def test_empty_header_block_is_a_request_without_headers():
    _, request, leftover = handshake(b"hackme\r\n\r\n" + AUDIO)
    assert request.headers == () and leftover == AUDIO


def test_password_is_never_shown():
    assert "hackme" not in repr(Password("hackme"))


def test_ok2_reply_is_exactly_2_4_4s():
    assert OK2_REPLY == b"OK2\r\nicy-caps:11\r\n\r\n"


# --- refusals: always closed without an answer -------------------------------------------


def closes(raw: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        run(byte_by_byte(raw, 0))
    assert caught.value.status == CLOSE_SILENTLY
    return caught.value


def test_password_line_longer_than_the_bound_closes():
    assert "password line too long" in closes(b"x" * (MAX_PASSWORD_LINE + 1)).message


def test_password_line_at_the_bound_is_accepted():
    password, _, _ = handshake(b"x" * MAX_PASSWORD_LINE + b"\n\n")
    assert len(password.text) == MAX_PASSWORD_LINE


def test_oversized_header_block_closes():
    assert "too large" in closes(b"hackme\r\nicy-name:" + b"x" * MAX_HEAD_BYTES).message


@pytest.mark.parametrize("block", [b"not a header\r\n\r\n", b"icy-name:a\x01b\r\n\r\n",
                                   b" icy-name:folded\r\n\r\n"])
def test_malformed_header_block_closes(block):
    closes(b"hackme\r\n" + block)


def test_next_event_after_the_end_is_a_caller_bug():
    parser = HandshakeParser("/stream")
    parser.feed(DSP)
    parser.next_event()
    parser.next_event()
    with pytest.raises(RuntimeError):
        parser.next_event()


# --- the password check ----------------------------------------------------------------


@pytest.mark.parametrize("given, expected, ok", [
    ("hackme", "hackme", True),
    ("hackme", "hackm", False),
    ("Hackme", "hackme", False),
    ("", "", True),
    ("hackme", None, False),  # no password configured: 2.4.4 refuses every source
    ("pässwörd", "pässwörd", True),
])
def test_password_matches_exactly(given, expected, ok):
    assert password_matches(Password(given), expected) is ok


# --- which <listen-socket> an inherited fd serves ------------------------------------------


HTTP = ListenSocket(port=8000)
COMPAT = ListenSocket(port=8001, shoutcast_compat=True, shoutcast_mount="/live")
ANY_PORT_COMPAT = ListenSocket(port=0, shoutcast_compat=True)


@pytest.mark.parametrize("specs, index, bound, expected", [
    ((HTTP, COMPAT), 1, 8001, COMPAT),  # the supervisor's order
    ((HTTP, ANY_PORT_COMPAT), 1, 40123, ANY_PORT_COMPAT),  # port 0 binds any port
    ((COMPAT, HTTP), 0, 8000, HTTP),  # order changed since (SIGHUP): found by port
    ((HTTP,), 1, 8001, ListenSocket(port=8001)),  # gone from the config: plain HTTP
])
def test_listener_spec_by_order_then_port(specs, index, bound, expected):
    assert spec_of_listener(specs, index, bound) == expected
