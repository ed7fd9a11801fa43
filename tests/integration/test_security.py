"""`<security><changeowner>`, `<chroot>` and `<paths><pidfile>` on a real fanout (issue 11).

The server binds its sockets as root, then drops the supervisor to the user and group
(so the workers it execs are that user's too), chroots first when asked, and writes its
pid file; as Icecast 2.4.4 it refuses to run as root without changeowner unless told to
(`--allow-root`, which tests/support/server.py passes everywhere else). The servers run
in a private mount namespace in which the user can read this machine's Python
(tests/support/rootview.py): nothing on the machine is changed.
"""
from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from tests.support.admin import get
from tests.support.clients import Listener, Source, locate_in_pattern
from tests.support.rootview import ChrootBase, available, namespace_prefix, open_directory, owned_by
from tests.support.server import FanoutProcess, icecast_xml, start_fanout
from tests.support.waiting import wait_for

pytestmark = pytest.mark.skipif(not available(), reason="needs root and unshare")

USER, GROUP = "nobody", "nogroup"
REPO = Path(__file__).resolve().parents[2]
REFUSAL = ("fanout: refusing to run as root: set <security><changeowner> to an unprivileged "
           "user and group, or pass --allow-root")


@pytest.fixture
def place() -> Iterator[Path]:
    path = open_directory("fanout-security-")
    yield path
    shutil.rmtree(path)


def ids() -> tuple[int, int]:
    return pwd.getpwnam(USER).pw_uid, grp.getgrnam(GROUP).gr_gid


def changeowner(chroot: bool = False) -> str:
    return (f"<security><chroot>{int(chroot)}</chroot><changeowner><user>{USER}</user>"
            f"<group>{GROUP}</group></changeowner></security>")


def streams(server: FanoutProcess, mount: str = "/live") -> None:
    """A source and a listener go through: the server serves as whoever it became."""
    source = Source(server.host, server.port, mount)
    assert source.accepted, source.response
    try:
        source.send_pattern(64 * 1024)
        listener = Listener(server.host, server.port, mount).start()
        source.send_pattern(64 * 1024)
        wait_for(lambda: len(listener.body) >= 32 * 1024, 10, "the listener's stream")
        listener.close()
        locate_in_pattern(bytes(listener.body))
    finally:
        source.close()


def run_as(pid: int) -> set[tuple[int, int]]:
    """The (real/effective/saved uid, gid) sets of `pid` and its workers."""
    processes = [psutil.Process(pid), *psutil.Process(pid).children()]
    return {(p.uids(), p.gids()) for p in processes}  # type: ignore[misc]


def test_changeowner_runs_the_supervisor_and_every_worker_as_the_user(place: Path) -> None:
    uid, gid = ids()
    logdir = owned_by(place / "log", uid, gid)
    pidfile = owned_by(place / "run", uid, gid) / "fanout.pid"
    config = icecast_xml(extra=f"{changeowner()}<paths><logdir>{logdir}</logdir>"
                               f"<pidfile>{pidfile}</pidfile></paths>")
    server = start_fanout(config, place, prefix=namespace_prefix(open_directory("fanout-view-")))
    try:
        assert pidfile.read_text() == f"{server.proc.pid}\n"
        assert run_as(server.proc.pid) == {((uid, uid, uid), (gid, gid, gid))}
        streams(server)
        # the log files were opened as the user, after the drop (2.4.4 does the same)
        assert (logdir / "error.log").stat().st_uid == uid
        assert "worker 0 booted" in (logdir / "error.log").read_text()
    finally:
        assert server.stop() == 0, server.output()
    assert not pidfile.exists()  # removed by the user, at exit


def test_root_without_changeowner_is_refused_unless_allowed(place: Path) -> None:
    pidfile = place / "fanout.pid"
    config = place / "icecast.xml"
    config.write_text(icecast_xml(extra=f"<paths><pidfile>{pidfile}</pidfile></paths>"))
    refused = subprocess.run([sys.executable, "-m", "fanout", "-c", str(config)], cwd=REPO,
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines()[-1] == REFUSAL
    assert "listening on" not in refused.stdout and not pidfile.exists()

    allowed = start_fanout(config.read_text(), place)  # with --allow-root
    try:
        assert pidfile.read_text() == f"{allowed.proc.pid}\n"
        assert run_as(allowed.proc.pid) == {((0, 0, 0), (0, 0, 0))}
    finally:
        assert allowed.stop() == 0
    assert not pidfile.exists()


def test_a_pid_file_held_by_a_running_fanout_refuses_a_second_one(place: Path) -> None:
    pidfile = place / "fanout.pid"
    config = icecast_xml(extra=f"<paths><pidfile>{pidfile}</pidfile></paths>")
    first = start_fanout(config, place)
    try:
        second = place / "second.xml"
        second.write_text(config)
        result = subprocess.run([sys.executable, "-m", "fanout", "--allow-root", "-c", str(second)],
                                cwd=REPO, capture_output=True, text=True, timeout=30)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1] == (
            f"fanout: config error: icecast/paths/pidfile: {str(pidfile)!r} belongs to the "
            f"running fanout with pid {first.proc.pid}")
        assert pidfile.read_text() == f"{first.proc.pid}\n"  # left alone
    finally:
        assert first.stop() == 0


def test_chroot_serves_from_inside_the_base_and_reloads_the_config_from_outside(place: Path) -> None:
    uid, gid = ids()
    base = ChrootBase(owned_by(place / "base", 0, 0))
    logs = owned_by(base.path / "logs", uid, gid)
    pidfile = owned_by(place / "run", uid, gid) / "fanout.pid"  # outside the new root
    config = icecast_xml(extra=f"{changeowner(chroot=True)}"
                               f"<paths><basedir>{base.path}</basedir><logdir>/logs</logdir>"
                               f"<pidfile>{pidfile}</pidfile></paths>")
    server = start_fanout(config, place,  # the file (place/icecast.xml) stays outside
                          prefix=namespace_prefix(open_directory("fanout-view-"), base))
    try:
        assert psutil.Process(server.proc.pid).cwd() == str(base.path)  # chdir'd to its "/"
        assert run_as(server.proc.pid) == {((uid, uid, uid), (gid, gid, gid))}
        streams(server)
        assert "worker 1 booted" in (logs / "error.log").read_text()  # /logs inside the base
        assert get(server, "/status-json.xsl", None).status == 200
        server.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP: configuration reloaded" in (logs / "error.log").read_text(), 10,
                 "the reload, read through the directory kept open before the chroot")
    finally:
        assert server.stop() == 0, server.output()
    assert not pidfile.exists()
