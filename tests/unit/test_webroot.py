"""fanout.protocol.webroot: aliases, safe file names under the webroot, types, ranges, heads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fanout.config import Alias
from fanout.protocol.errors import ProtocolError
from fanout.protocol.webroot import (
    DEFAULT_TYPE, FALLBACK_TYPES, MAX_RANGE_DIGITS, RANGE_REFUSED_BODY, ByteRange, content_type,
    find_alias, inside_webroot, parse_mime_types, plan_range, render_file_head,
    render_range_refusal, webroot_file,
)

SERVER = "Icecast 2.4.4"
NOW = 1_700_000_000.0
MTIME = 1_600_000_000.0
DATE = "Tue, 14 Nov 2023 22:13:20 GMT"
MODIFIED = "Sun, 13 Sep 2020 12:26:40 GMT"
COMMON = (f"Server: {SERVER}\r\nConnection: Close\r\nDate: {DATE}\r\n")
NO_CACHE = "Cache-Control: no-cache, no-store\r\nExpires: Mon, 26 Jul 1997 05:00:00 GMT\r\nPragma: no-cache\r\n"


# ---- aliases (2.4.4 src/connection.c: _handle_get_request) --------------------------------


def test_alias_maps_exactly_its_source() -> None:
    aliases = [Alias("/", "/status.xsl")]
    assert find_alias(aliases, "/", 8000, None) == "/status.xsl"
    assert find_alias(aliases, "/x", 8000, None) is None
    assert find_alias([Alias("/a", "/b")], "/a/", 8000, None) is None  # no prefix match


def test_first_matching_alias_wins_and_is_not_chained() -> None:
    aliases = [Alias("/a", "/b"), Alias("/a", "/c"), Alias("/b", "/d")]
    assert find_alias(aliases, "/a", 8000, None) == "/b"


def test_alias_port_restricts_it_to_that_listen_socket() -> None:
    aliases = [Alias("/", "/one.xsl", port=8001), Alias("/", "/any.xsl")]
    assert find_alias(aliases, "/", 8001, None) == "/one.xsl"
    assert find_alias(aliases, "/", 8000, None) == "/any.xsl"


def test_alias_bind_address_needs_a_socket_configured_with_that_address() -> None:
    aliases = [Alias("/", "/local.xsl", bind_address="127.0.0.1")]
    assert find_alias(aliases, "/", 8000, "127.0.0.1") == "/local.xsl"
    assert find_alias(aliases, "/", 8000, "10.0.0.1") is None
    # 2.4.4 compares with the socket's configured bind-address: none configured, no match.
    assert find_alias(aliases, "/", 8000, None) is None


# ---- file names ---------------------------------------------------------------------------


def test_webroot_file_joins_the_path() -> None:
    assert webroot_file("/srv/web", "/style.css") == "/srv/web/style.css"
    assert webroot_file("/srv/web/", "/a/b.png") == "/srv/web/a/b.png"


@pytest.mark.parametrize("path", ["/../etc/passwd", "/a/../../x", "/./x", "/a//b", "/a/..",
                                  "/a\\..\\x", "/x\x00y", "relative"])
def test_webroot_file_refuses_paths_that_could_leave_the_webroot(path: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        webroot_file("/srv/web", path)
    assert caught.value.status == 400


def test_webroot_file_refuses_a_directory_path() -> None:
    with pytest.raises(ProtocolError) as caught:
        webroot_file("/srv/web", "/dir/")
    assert caught.value.status == 404


def test_inside_webroot_decides_on_resolved_names(tmp_path: Path) -> None:
    web = tmp_path / "web"
    (web / "sub").mkdir(parents=True)
    (web / "sub" / "ok.txt").write_text("x")
    (tmp_path / "secret").write_text("s")
    os.symlink(tmp_path / "secret", web / "leak")
    os.symlink(web / "sub" / "ok.txt", web / "inner")
    root = os.path.realpath(web)

    def allowed(request: str) -> bool:
        return inside_webroot(root, os.path.realpath(webroot_file(str(web), request)))

    assert allowed("/sub/ok.txt") and allowed("/inner")
    assert not allowed("/leak")  # a symlink out of the webroot
    assert not inside_webroot(root, root)  # the webroot itself is no file
    assert not inside_webroot(root, root + "-other/x")  # a sibling sharing the prefix


# ---- types --------------------------------------------------------------------------------


def test_mime_types_file_is_read_and_later_lines_win() -> None:
    types = parse_mime_types("# comment\naudio/mpeg mp3 mpga\n\ntext/x-old css\ntext/css\tcss\nlonely\n")
    assert types == {"mp3": "audio/mpeg", "mpga": "audio/mpeg", "css": "text/css"}


def test_content_type_prefers_the_file_then_2_4_4s_fallbacks() -> None:
    types = {"ogg": "audio/ogg"}
    assert content_type("/a/b.ogg", types) == "audio/ogg"
    assert content_type("/a/b.mp3", types) == FALLBACK_TYPES["mp3"] == "audio/mpeg"
    assert content_type("/a/b.xyz", types) == DEFAULT_TYPE
    assert content_type("/a.d/readme", types) == DEFAULT_TYPE  # a dot in a directory name only
    assert content_type("/a/B.MP3", types) == DEFAULT_TYPE  # case matters, as in 2.4.4


@pytest.mark.skipif(not Path("/etc/mime.types").exists(), reason="no /etc/mime.types")
def test_the_systems_mime_types_give_the_usual_audio_types() -> None:
    types = parse_mime_types(Path("/etc/mime.types").read_text(errors="replace"))
    assert content_type("/x.mp3", types) == "audio/mpeg"
    assert content_type("/x.css", types) == "text/css"


# ---- ranges -------------------------------------------------------------------------------


@pytest.mark.parametrize("header, expected", [
    (None, None),
    ("bytes=0-", ByteRange(0, 999, 1000)),
    ("bytes=0-1", ByteRange(0, 1, 1000)),  # Safari's probe: exactly two bytes
    ("bytes=500-", ByteRange(500, 999, 1000)),
    ("bytes=990-5000", ByteRange(990, 999, 1000)),  # an end past the file is clamped
    ("bytes=-100", ByteRange(900, 999, 1000)),  # a suffix
    ("bytes=-5000", ByteRange(0, 999, 1000)),
    ("Bytes = 10-19", ByteRange(10, 19, 1000)),
    ("bytes=0-1,5-6", None),  # several ranges: the whole file (RFC 9110 allows it)
    ("items=0-1", None), ("bytes=x-", None), ("bytes=-", None), ("bytes=5-2", None), ("", None),
])
def test_plan_range(header: str | None, expected: ByteRange | None) -> None:
    assert plan_range(header, 1000) == expected


@pytest.mark.parametrize("header, size", [
    ("bytes=1000-", 1000), ("bytes=1000-2000", 1000), ("bytes=-0", 1000), ("bytes=0-", 0),
    ("bytes=-10", 0), ("bytes=" + "9" * (MAX_RANGE_DIGITS + 5) + "-", 1000),
])
def test_unsatisfiable_range_is_416(header: str, size: int) -> None:
    with pytest.raises(ProtocolError) as caught:
        plan_range(header, size)
    assert caught.value.status == 416


def test_byte_range_length() -> None:
    assert ByteRange(10, 19, 100).length == 10


# ---- heads --------------------------------------------------------------------------------


def test_whole_file_head() -> None:
    head = render_file_head(None, 1234, "text/css", MTIME, server_id=SERVER, now=NOW,
                            extra_headers=[("Access-Control-Allow-Origin", "*")])
    assert head == (f"HTTP/1.0 200 OK\r\n{COMMON}Content-Type: text/css\r\n{NO_CACHE}"
                    f"Access-Control-Allow-Origin: *\r\nLast-Modified: {MODIFIED}\r\n"
                    "Accept-Ranges: bytes\r\nContent-Length: 1234\r\n\r\n").encode()


def test_partial_head_is_http_1_1_206_with_content_range() -> None:
    head = render_file_head(ByteRange(100, 199, 1234), 1234, "audio/mpeg", MTIME,
                            server_id=SERVER, now=NOW)
    assert head == (f"HTTP/1.1 206 Partial Content\r\n{COMMON}Content-Type: audio/mpeg\r\n{NO_CACHE}"
                    f"Last-Modified: {MODIFIED}\r\nAccept-Ranges: bytes\r\nContent-Length: 100\r\n"
                    "Content-Range: bytes 100-199/1234\r\n\r\n").encode()


def test_range_refusal_is_2_4_4s_416_with_the_size() -> None:
    answer = render_range_refusal(1234, server_id=SERVER, now=NOW)
    assert answer == (f"HTTP/1.0 416 Request Range Not Satisfiable\r\n{COMMON}"
                      f"Content-Type: text/plain; charset=utf-8\r\n{NO_CACHE}"
                      "Content-Range: bytes */1234\r\n\r\n").encode() + RANGE_REFUSED_BODY
