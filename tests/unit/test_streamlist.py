"""The master's mount list: parsed as a slave (both dialects), rendered as a master."""
from __future__ import annotations

import random

from fanout.protocol.mount_name import MAX_MOUNT_BYTES
from fanout.protocol.streamlist import (MAX_LINE, MAX_LINES, SKIP_EXAMPLES, ListedMount,
                                        parse_line, parse_streamlist, render_kh_streams,
                                        render_streamlist)


def test_icecast_list_gives_one_mount_per_crlf_line():
    listing = parse_streamlist(b"/live.mp3\r\n/live.ogg\r\n")
    assert listing.mounts == (ListedMount("/live.mp3", "/live.mp3"),
                              ListedMount("/live.ogg", "/live.ogg"))
    assert (listing.skipped, listing.examples, listing.truncated) == (0, (), False)


def test_kh_lines_are_fetched_as_listed_under_the_mount_name():
    listing = parse_streamlist(b"/admin/streams?mount=/live.mp3\r\n")
    assert listing.mounts == (ListedMount("/live.mp3", "/admin/streams?mount=/live.mp3"),)


def test_bare_lf_lines_and_a_final_line_without_newline_are_read():
    assert [m.mount for m in parse_streamlist(b"/a\n/b").mounts] == ["/a", "/b"]


def test_percent_encoded_path_is_decoded_and_query_dropped():
    assert parse_streamlist(b"/my%20radio?x=1\r\n").mounts[0].mount == "/my radio"
    assert parse_streamlist(b"/caf%C3%A9?x=1\r\n").mounts[0].mount == "/café"


def test_over_long_lines_are_skipped_and_said_why():
    listing = parse_streamlist(b"/" + b"x" * MAX_LINE + b"\r\n/ok\r\n")
    assert [m.mount for m in listing.mounts] == ["/ok"]
    assert listing.examples == ("line 1: longer than 255 bytes",)


def test_non_slash_lines_and_garbage_are_skipped_and_counted():
    body = b"http://other:8000/x\r\nnot a mount\r\n\x00\xff\r\n/\r\n/admin/stats\r\n/../x\r\n/ok\r\n"
    listing = parse_streamlist(body)
    assert [m.mount for m in listing.mounts] == ["/ok"]
    assert listing.skipped == 6


def test_only_the_first_few_skipped_lines_keep_their_reason():
    listing = parse_streamlist(b"junk\n" * 500 + b"/ok\n")
    assert [m.mount for m in listing.mounts] == ["/ok"]
    assert listing.skipped == 500
    assert listing.examples == tuple(f"line {n}: does not start with '/': 'junk'"
                                     for n in range(1, SKIP_EXAMPLES + 1))


def test_percent_encoded_control_characters_are_not_a_mount():
    listing = parse_streamlist(b"/a%0d%0aInjected:%201\r\n/admin/streams?mount=/b%0a\r\n/ok\r\n")
    assert [m.mount for m in listing.mounts] == ["/ok"] and listing.skipped == 2
    assert listing.examples[0] == "line 1: control character in the mount name: '/a\\r\\nInjected: 1'"


def test_at_most_max_lines_lines_are_read():
    body = b"".join(b"/m%d\r\n" % n for n in range(MAX_LINES + 5))
    listing = parse_streamlist(body)
    assert len(listing.mounts) == MAX_LINES and listing.truncated
    assert listing.mounts[-1].mount == f"/m{MAX_LINES - 1}"


def test_a_list_of_exactly_max_lines_lines_is_not_truncated():
    for body in (b"/a\n/b\n/c\n", b"/a\n/b\n/c"):
        listing = parse_streamlist(body, max_lines=3)
        assert len(listing.mounts) == 3 and not listing.truncated
    assert parse_streamlist(b"/a\n/b\n/c\n/d", max_lines=3).truncated


def test_junk_past_the_line_limit_costs_nothing():
    body = b"/a\n" + b"x\n" * 500_000
    listing = parse_streamlist(body, max_lines=100)
    assert ([m.mount for m in listing.mounts], listing.skipped, listing.truncated) == (["/a"], 99, True)


def test_duplicate_mounts_are_listed_once():
    assert len(parse_streamlist(b"/a\r\n/a\r\n").mounts) == 1


def test_random_bytes_never_raise():
    rng = random.Random(4)
    for _ in range(200):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(600)))
        for mount in parse_streamlist(body).mounts:
            assert mount.mount.startswith("/")


def test_parse_line_says_why_a_line_was_skipped():
    assert parse_line(b"relay me") == (None, "contains a space or control character")


def test_rendered_list_is_sorted_bytewise_with_crlf_lines():
    assert render_streamlist(["/b", "/a", "/B"]) == b"/B\r\n/a\r\n/b\r\n"
    assert render_streamlist([]) == b""


def test_rendered_kh_list_names_fetch_paths():
    assert render_kh_streams(["/x"]) == b"/admin/streams?mount=/x\r\n"


def test_render_then_parse_round_trips():
    mounts = ["/a.mp3", "/b.ogg", "/ü"]
    assert [m.mount for m in parse_streamlist(render_streamlist(mounts)).mounts] == mounts


def test_a_listed_mount_longer_than_the_mount_name_limit_is_skipped():
    long_mount = "/" + "m" * MAX_MOUNT_BYTES  # one byte over: fits a line, not a mount
    listing = parse_streamlist(long_mount.encode() + b"\r\n/ok\r\n")
    assert [m.mount for m in listing.mounts] == ["/ok"]
    assert listing.examples[0].startswith(f"line 1: a mount name longer than {MAX_MOUNT_BYTES} bytes")
