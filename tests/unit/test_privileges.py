"""fanout.privileges: the root decision, pid files (real files, real processes), config
source; chroot and changeowner for real are in tests/integration/test_config_elements.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fanout.config import ChangeOwner
from fanout.privileges import (
    MAX_PIDFILE_BYTES, ConfigSource, PidFile, is_fanout, parse_pid, resolve_owner, root_refusal,
)
from fanout.startup import EXIT_CONFIG, StartupError

# A long-lived process whose command line names fanout (a running server, as far as the
# pid file check can tell) and one that does not. Each says "ready" once it runs (its
# command line is readable only once exec has finished), then waits for stdin to close.
WAIT = "print('ready', flush=True); import sys; sys.stdin.read()"
FANOUT_LOOKALIKE = [sys.executable, "-c", WAIT, "fanout"]
OTHER_PROCESS = [sys.executable, "-c", WAIT]


@pytest.fixture
def process(request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(request.param, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
    yield proc
    proc.stdin.close()  # type: ignore[union-attr]
    proc.wait()
    proc.stdout.close()


@pytest.mark.parametrize("euid, target, allowed, refused", [
    (0, None, False, True),  # root without changeowner
    (0, 0, False, True),  # changeowner to root
    (0, 65534, False, False),  # changeowner to nobody
    (0, None, True, False),  # --allow-root
    (1000, None, False, False),  # not root at all
    (1000, 0, False, False),  # not root: changeowner is skipped, we stay 1000
])
def test_root_refusal(euid: int, target: int | None, allowed: bool, refused: bool) -> None:
    reason = root_refusal(euid, target, allowed)
    assert (reason is not None) == refused
    if refused:
        assert reason == ("refusing to run as root: set <security><changeowner> to an "
                          "unprivileged user and group, or pass --allow-root")


@pytest.mark.parametrize("data, pid", [(b"1234\n", 1234), (b" 77 ", 77), (b"", None), (b"0\n", None),
                                       (b"-5\n", None), (b"12ab\n", None), (b"9" * 20, None)])
def test_parse_pid(data: bytes, pid: int | None) -> None:
    assert parse_pid(data) == pid


def test_resolve_owner_finds_user_group_and_groups() -> None:
    owner = resolve_owner(ChangeOwner("nobody", "nogroup"))
    assert (owner.user, owner.uid, owner.gid) == ("nobody", 65534, 65534)
    assert owner.gid in owner.groups


@pytest.mark.parametrize("change, path", [
    (ChangeOwner("no-such-user-x", "nogroup"), "icecast/security/changeowner/user"),
    (ChangeOwner("nobody", "no-such-group-x"), "icecast/security/changeowner/group"),
])
def test_unknown_user_or_group_is_a_config_error(change: ChangeOwner, path: str) -> None:
    with pytest.raises(StartupError) as caught:
        resolve_owner(change)
    assert caught.value.status == EXIT_CONFIG and caught.value.message.startswith(f"config error: {path}: ")


# ---- pid files ----------------------------------------------------------------------------


def test_pid_file_is_written_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "fanout.pid"
    pidfile = PidFile(str(path))
    pidfile.write(4242)
    assert path.read_text() == "4242\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fanout.pid"]  # no temporary left
    pidfile.remove()
    assert not path.exists()
    pidfile.close()


def test_pid_file_taken_over_by_another_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "fanout.pid"
    pidfile = PidFile(str(path))
    pidfile.write(4242)
    path.write_text("4343\n")  # another server wrote it since
    pidfile.remove()
    assert path.read_text() == "4343\n"
    pidfile.close()


@pytest.mark.parametrize("process", [FANOUT_LOOKALIKE], indirect=True)
def test_pid_file_held_by_a_live_fanout_is_refused(tmp_path: Path, process: subprocess.Popen) -> None:
    path = tmp_path / "fanout.pid"
    path.write_text(f"{process.pid}\n")
    pidfile = PidFile(str(path))
    with pytest.raises(StartupError) as caught:
        pidfile.write(4242)
    assert caught.value.message == (f"config error: icecast/paths/pidfile: {str(path)!r} belongs to "
                                    f"the running fanout with pid {process.pid}")
    assert path.read_text() == f"{process.pid}\n"
    pidfile.close()


@pytest.mark.parametrize("process", [OTHER_PROCESS], indirect=True)
def test_pid_file_naming_another_program_is_stale(tmp_path: Path, process: subprocess.Popen) -> None:
    # After a crash and a reboot the pid may belong to anything: that does not hold it.
    path = tmp_path / "fanout.pid"
    path.write_text(f"{process.pid}\n")
    assert not is_fanout(process.pid)
    pidfile = PidFile(str(path))
    pidfile.write(4242)
    assert path.read_text() == "4242\n"
    pidfile.close()


def test_pid_file_of_a_dead_process_is_stale(tmp_path: Path) -> None:
    dead = subprocess.Popen(FANOUT_LOOKALIKE, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    assert dead.wait() == 0
    path = tmp_path / "fanout.pid"
    path.write_text(f"{dead.pid}\n")
    pidfile = PidFile(str(path))
    assert pidfile.holder() is None
    pidfile.write(4242)
    assert path.read_text() == "4242\n"
    pidfile.close()


def test_oversized_pid_file_holds_nothing(tmp_path: Path) -> None:
    path = tmp_path / "fanout.pid"
    path.write_text("1" * (MAX_PIDFILE_BYTES + 1))
    pidfile = PidFile(str(path))
    assert pidfile.holder() is None
    pidfile.close()


def test_pid_file_in_a_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(StartupError) as caught:
        PidFile(str(tmp_path / "no" / "fanout.pid"))
    assert caught.value.message.startswith("config error: icecast/paths/pidfile: ")


def test_config_source_rereads_the_file_by_name(tmp_path: Path) -> None:
    path = tmp_path / "icecast.xml"
    path.write_text("<icecast/>")
    source = ConfigSource(str(path))
    replacement = tmp_path / "new.xml"
    replacement.write_text("<icecast><location>x</location></icecast>")
    replacement.replace(path)  # editors replace the file: a held file descriptor would be stale
    assert source.read() == b"<icecast><location>x</location></icecast>"
    source.close()
