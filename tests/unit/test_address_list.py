"""<paths><deny-ip>/<allow-ip>: the file format and the matching (2.4.4's rules), and the
per-worker cache that re-reads a file when it changes (fanout.address_files)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from fanout.address_files import ALLOW_ELEMENT, RECHECK_INTERVAL, AddressFile, AddressFilter
from fanout.config import Paths
from fanout.protocol.address_list import BANNED, NOT_ALLOWED, parse_address_list, refusal


def test_one_entry_a_line_comments_and_empty_lines_skipped() -> None:
    data = b"# banned\n10.0.0.1\r\n\n10.0.0.2\n#10.0.0.3\n10.0.0.4"
    assert parse_address_list(data) == ("10.0.0.1", "10.0.0.2", "10.0.0.4")


def test_entries_are_taken_as_they_are_no_trimming() -> None:
    assert parse_address_list(b" 10.0.0.1\n10.0.0.2 \n10.0.0.3\t\n") == (
        " 10.0.0.1", "10.0.0.2 ", "10.0.0.3\t")


def test_duplicates_are_kept_for_the_count() -> None:
    assert parse_address_list(b"10.0.0.1\n10.0.0.1\n") == ("10.0.0.1", "10.0.0.1")


def test_matching_is_exact_no_wildcards_or_networks() -> None:
    denied = frozenset(parse_address_list(b"10.0.0.*\n10.0.0.0/24\n192.168.1.1\n"))
    assert refusal("10.0.0.7", denied, None) is None
    assert refusal("192.168.1.10", denied, None) is None
    assert refusal("192.168.1.1", denied, None) == BANNED
    assert refusal("10.0.0.*", denied, None) == BANNED  # the string itself, nothing more


def test_an_ipv4_mapped_address_matches_without_its_prefix() -> None:
    assert refusal("::ffff:192.168.1.1", frozenset({"192.168.1.1"}), None) == BANNED
    assert refusal("::1", frozenset({"::1"}), None) == BANNED


def test_deny_wins_over_allow() -> None:
    both = frozenset({"10.0.0.1"})
    assert refusal("10.0.0.1", both, both) == BANNED


def test_with_an_allow_list_only_its_addresses_are_served() -> None:
    allowed = frozenset({"10.0.0.1"})
    assert refusal("10.0.0.1", None, allowed) is None
    assert refusal("10.0.0.2", None, allowed) == NOT_ALLOWED


def test_an_empty_allow_list_allows_no_one() -> None:
    allowed = frozenset(parse_address_list(b"# nobody yet\n"))
    assert refusal("10.0.0.1", None, allowed) == NOT_ALLOWED


def test_no_lists_refuse_nothing() -> None:
    assert refusal("10.0.0.1", None, None) is None


# -- the cache ---------------------------------------------------------------------------


def test_a_changed_file_is_read_again_after_the_interval(tmp_path: Path) -> None:
    path = tmp_path / "allow"
    path.write_text("10.0.0.1\n")
    listed = AddressFile(ALLOW_ELEMENT, str(path))
    assert listed.current(100.0) == {"10.0.0.1"}
    path.write_text("10.0.0.2\n10.0.0.3\n")  # a size change is seen whatever the mtime
    assert listed.current(100.0 + RECHECK_INTERVAL / 2) == {"10.0.0.1"}  # not looked at yet
    assert listed.current(100.0 + RECHECK_INTERVAL) == {"10.0.0.2", "10.0.0.3"}


def test_an_unchanged_file_is_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "deny"
    path.write_text("10.0.0.1\n")
    listed = AddressFile("icecast/paths/deny-ip", str(path))
    listed.current(0.0)
    reads = []
    monkeypatch.setattr("fanout.address_files.read_file", lambda p: reads.append(p) or b"")
    assert listed.current(RECHECK_INTERVAL) == {"10.0.0.1"}
    assert reads == []


def test_an_unreadable_file_keeps_the_list_and_is_warned_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "allow"
    listed = AddressFile(ALLOW_ELEMENT, str(path))
    with caplog.at_level(logging.INFO, "fanout"):
        assert listed.current(0.0) is None  # missing at start: the supervisor said so
        assert not [r for r in caplog.records if r.levelno == logging.WARNING]
        path.write_text("10.0.0.1\n")
        assert listed.current(RECHECK_INTERVAL) == {"10.0.0.1"}
        assert caplog.records[-1].getMessage() == f'1 entries read from file "{path}"'
        os.unlink(path)
        for step in (2, 3):
            assert listed.current(step * RECHECK_INTERVAL) == {"10.0.0.1"}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"icecast/paths/allow-ip: cannot read {path}: No such file or directory; "
                        "it does not restrict who connects until it can be read"]


def test_a_filter_keeps_a_file_whose_path_did_not_change(tmp_path: Path) -> None:
    addresses = AddressFilter()
    assert addresses.refusal("10.0.0.1", 0.0) is None  # nothing configured
    (tmp_path / "deny").write_text("10.0.0.1\n")
    addresses.configure(Paths(deny_ip=str(tmp_path / "deny")))
    kept = addresses.denied
    assert addresses.refusal("10.0.0.1", 0.0) == BANNED
    addresses.configure(Paths(deny_ip=str(tmp_path / "deny")))
    assert addresses.denied is kept
    addresses.configure(Paths())
    assert addresses.refusal("10.0.0.1", 0.0) is None
