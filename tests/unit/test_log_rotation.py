"""<logging><logsize>/<logarchive>: log files rotated by size as 2.4.4 does (fanout.logs
rule 4), for error.log/access.log (LogFile, written by several processes) and playlist.log."""
from __future__ import annotations

import logging
import os
import re
import time
from pathlib import Path

from fanout.config import Config, Logging, Paths
from fanout.logs import LineFormatter, LogFile
from fanout.protocol.log_rotation import DEFAULT_ROTATE_BYTES, Rotation
from fanout.source_files import PlaylistLog

LINE = "x" * 99  # 100 bytes a line with its newline


def record(message: str) -> logging.LogRecord:
    return logging.LogRecord("fanout.test", logging.WARNING, __file__, 1, message, (), None)


def log_file(path: Path, rotation: Rotation) -> LogFile:
    handler = LogFile(str(path), fallback_to_stderr=False, rotation=rotation)
    handler.setFormatter(LineFormatter("%(message)s"))
    return handler


def test_logsize_is_kib_and_unset_or_zero_is_2_4_4s_default() -> None:
    assert Rotation.of(4, False) == Rotation(4096, False)
    assert Rotation.of(None, True) == Rotation(DEFAULT_ROTATE_BYTES, True)
    assert Rotation.of(0, False).max_bytes == DEFAULT_ROTATE_BYTES == 1_000_000_000


def test_rotated_names_are_old_or_the_local_time() -> None:
    now = time.mktime((2026, 12, 3, 17, 5, 9, 0, 0, -1))
    assert Rotation(1).rotated_name("/l/error.log", now) == "/l/error.log.old"
    assert Rotation(1, archive=True).rotated_name("/l/error.log", now) == "/l/error.log.20261203_170509"


def test_a_file_past_its_size_is_renamed_before_the_next_line(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    handler = log_file(path, Rotation(250))
    try:
        for n in range(3):  # 300 bytes: past 250 only after the third line
            handler.emit(record(LINE))
        assert not (tmp_path / "error.log.old").exists()
        handler.emit(record("fresh"))
        assert (tmp_path / "error.log.old").read_text() == (LINE + "\n") * 3
        assert path.read_text() == "fresh\n"
    finally:
        handler.close()


def test_a_second_rotation_replaces_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    handler = log_file(path, Rotation(150))
    try:
        for text in ("a" * 199, "b", "c" * 199, "d"):
            handler.emit(record(text))
        assert (tmp_path / "access.log.old").read_text() == "b\n" + "c" * 199 + "\n"
        assert path.read_text() == "d\n"
    finally:
        handler.close()


def test_with_logarchive_the_rotated_file_is_named_by_the_time(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    handler = log_file(path, Rotation(50, archive=True))
    try:
        handler.emit(record(LINE))
        handler.emit(record("fresh"))
    finally:
        handler.close()
    rotated = [p.name for p in tmp_path.iterdir() if p.name != "error.log"]
    assert len(rotated) == 1 and re.fullmatch(r"error\.log\.\d{8}_\d{6}", rotated[0]), rotated
    assert (tmp_path / rotated[0]).read_text() == LINE + "\n"
    assert path.read_text() == "fresh\n"


def test_a_file_already_large_at_open_is_rotated_at_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    path.write_text(LINE + "\n")
    handler = log_file(path, Rotation(50))
    try:
        handler.emit(record("fresh"))
    finally:
        handler.close()
    assert (tmp_path / "error.log.old").read_text() == LINE + "\n"
    assert path.read_text() == "fresh\n"


def test_writers_of_one_file_rotate_it_once(tmp_path: Path) -> None:
    """Two handlers opened separately stand for two processes: the second finds the file
    renamed already and follows it instead of renaming the new one over the old."""
    path = tmp_path / "access.log"
    first, second = log_file(path, Rotation(150)), log_file(path, Rotation(150))
    try:
        first.emit(record("a" * 99))
        second.emit(record("b" * 99))  # 200 bytes: past the size, as `second` sees
        first.emit(record("first late"))  # `first` saw 100 bytes: one more line (doc rule 4)
        second.emit(record("second after"))  # renames, and goes on in a new file
        first.emit(record("first after"))  # finds its file renamed: follows, renames nothing
        assert (tmp_path / "access.log.old").read_text() == (
            "a" * 99 + "\n" + "b" * 99 + "\nfirst late\n")
        assert path.read_text() == "second after\nfirst after\n"
    finally:
        first.close()
        second.close()


def test_the_size_counts_other_writers_lines(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    mine = log_file(path, Rotation(150))
    try:
        mine.emit(record("mine"))
        with open(path, "a") as other:  # another process's lines
            other.write(LINE + "\n" + LINE + "\n")
        mine.emit(record("mine again"))  # its end offset now counts the others' lines
        mine.emit(record("fresh"))
        assert path.read_text() == "fresh\n"
    finally:
        mine.close()


def test_reopen_takes_the_size_of_the_file_found(tmp_path: Path) -> None:
    path = tmp_path / "error.log"
    handler = log_file(path, Rotation(50))
    try:
        handler.emit(record(LINE))
        os.rename(path, tmp_path / "error.log.1")  # logrotate, then SIGUSR1
        handler.reopen()
        handler.emit(record("after logrotate"))
        assert not (tmp_path / "error.log.old").exists()
        assert path.read_text() == "after logrotate\n"
    finally:
        handler.close()


def test_the_playlist_log_rotates_too(tmp_path: Path) -> None:
    config = Config(paths=Paths(logdir=str(tmp_path)),
                    logging=Logging(playlistlog="playlist.log", logsize=1, logarchive=False))
    playlist = PlaylistLog.of(config)
    assert playlist is not None
    for n in range(40):  # ~40 bytes a line: past 1 KiB on the way
        playlist.add("/live", 1, f"title {n}", 1_700_000_000.0)
    old = (tmp_path / "playlist.log.old").read_text().splitlines()
    new = (tmp_path / "playlist.log").read_text().splitlines()
    assert old[0].endswith("title 0") and new[-1].endswith("title 39")
    assert len(old) + len(new) == 40
    assert sum(len(line) + 1 for line in old) > 1024 >= sum(len(line) + 1 for line in old[:-1])
