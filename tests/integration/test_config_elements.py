"""Issue 11 elements, each against the real thing: changeowner and chroot in a real process
started as root, the pid file across both, on-connect/on-disconnect programs run from a
gevent hub, and the YP protocol against a stand-in directory server over real sockets.

These exercise the modules the server's start-up and source path call
(fanout/privileges.py, fanout/hooks.py, fanout/protocol/yp.py) on their own; each element
wired into a running fanout has its own test over a real server too
(tests/integration/test_security.py and the others named in fanout/config/support.py).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import gevent
import gevent.socket
import pytest

from fanout.hooks import ON_CONNECT, run_hook
from fanout.protocol.upstream import head_end, parse_response_head
from fanout.protocol.yp import (
    ADD_REFUSED_DELAY, FIRST_TOUCH_DELAY, YpAnswer, YpListing, after_add, after_touch, listen_url,
    listing_started, parse_answer, removal, render_add, render_request, render_touch, yp_song,
)
from tests.support.ypserver import YpServer

REPO = Path(__file__).resolve().parents[2]
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
NOBODY, NOGROUP = "nobody", "nogroup"


# ---- changeowner, chroot, pidfile -----------------------------------------------------------

_SECURE = """
    import json, os, socket, sys
    from fanout.config import parse_config
    from fanout.privileges import secure_process
    from fanout.startup import StartupError
    if len(sys.argv) > 4:  # become this uid first (every module is imported already)
        os.setgid(int(sys.argv[4]))
        os.setuid(int(sys.argv[4]))
    config = parse_config(sys.argv[1])
    listener = socket.create_server(("127.0.0.1", 0))  # bound before, as the supervisor does
    print(listener.getsockname()[1], flush=True)
    try:
        secured = secure_process(config, sys.argv[2] or None, allow_root=sys.argv[3] == "1")
    except StartupError as exc:
        print(json.dumps({"refused": exc.message, "status": exc.status}), flush=True)
        raise SystemExit(exc.status)
    conn, _ = listener.accept()  # the socket bound before still serves
    conn.sendall(b"served as %d" % os.getuid())
    conn.close()
    try:
        os.setuid(0)
        regained = True
    except PermissionError:
        regained = False
    reloaded = secured.config_source.read().decode() if secured.config_source else None
    print(json.dumps({"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(),
                      "groups": os.getgroups(), "regained": regained, "cwd": os.getcwd(),
                      "root": sorted(os.listdir("/")), "reloaded": reloaded}), flush=True)
    secured.release()
"""


def rest_of(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """What the process still writes until it ends (after a readline: communicate() would
    lose what that readline buffered)."""
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()  # small: no pipe fills up
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    return out, err


def secure(config_xml: str, config_path: str = "", allow_root: bool = False) -> tuple[dict, str]:
    """Start _SECURE as its own process; connect to its pre-bound socket; its report."""
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_SECURE), config_xml, config_path,
                             "1" if allow_root else "0"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    greeting = ""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
            greeting = conn.recv(100).decode()
    except ConnectionError:
        pass  # refused: the process ended without serving
    out, err = rest_of(proc)
    report = json.loads(out.strip().splitlines()[-1])
    report["stderr"] = err
    return report, greeting


@needs_root
def test_changeowner_drops_to_user_and_group_after_binding(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    os.chown(run_dir, 65534, 65534)  # as systemd's RuntimeDirectory= would
    pidfile = run_dir / "fanout.pid"
    config = (f"<icecast><security><changeowner><user>{NOBODY}</user><group>{NOGROUP}</group>"
              f"</changeowner></security><paths><pidfile>{pidfile}</pidfile></paths></icecast>")
    report, greeting = secure(config)
    assert greeting == "served as 65534"
    assert (report["uid"], report["euid"], report["gid"]) == (65534, 65534, 65534)
    assert report["groups"] == [65534] and report["regained"] is False
    assert not pidfile.exists()  # written as root at start, removed as nobody at exit


@needs_root
def test_root_is_refused_without_changeowner_unless_allowed(tmp_path: Path) -> None:
    pidfile = tmp_path / "fanout.pid"
    config = f"<icecast><paths><pidfile>{pidfile}</pidfile></paths></icecast>"
    report, greeting = secure(config)
    assert report == {"refused": "refusing to run as root: set <security><changeowner> to an "
                                 "unprivileged user and group, or pass --allow-root",
                      "status": 2, "stderr": report["stderr"]}
    assert greeting == "" and not pidfile.exists()  # refused before anything was written
    allowed, greeting = secure(config, allow_root=True)
    assert allowed["uid"] == 0 and greeting == "served as 0"


@needs_root
def test_chroot_changes_root_and_the_config_stays_reloadable(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "inside.txt").write_text("x")
    config_path = tmp_path / "icecast.xml"  # outside the new root
    pidfile = tmp_path / "fanout.pid"  # outside too: removed through its directory's fd
    config = (f"<icecast><security><chroot>1</chroot><changeowner><user>{NOBODY}</user>"
              f"<group>{NOGROUP}</group></changeowner></security><paths><basedir>{base}</basedir>"
              f"<pidfile>{pidfile}</pidfile></paths></icecast>")
    config_path.write_text(config)
    os.chmod(tmp_path, 0o755)
    os.chmod(config_path, 0o644)  # nobody reloads it, as 2.4.4 re-reads its config as the user
    report, greeting = secure(config, str(config_path))
    assert greeting == "served as 65534"
    assert report["root"] == ["inside.txt"] and report["cwd"] == "/"
    assert report["reloaded"] == config
    assert pidfile.exists()  # nobody may not unlink in a root-owned directory: said in one line
    assert "cannot remove the pid file" in report["stderr"]


@needs_root
def test_chroot_without_basedir_is_a_config_error() -> None:
    report, _ = secure("<icecast><security><chroot>1</chroot></security></icecast>", allow_root=True)
    assert report["refused"] == ("config error: icecast/paths/basedir: missing: expected the "
                                 "directory <security><chroot> changes root to")


def test_changeowner_and_chroot_are_skipped_with_a_line_when_not_root(tmp_path: Path) -> None:
    become = ["65534"] if os.geteuid() == 0 else []
    base = tmp_path / "base"
    base.mkdir()
    config = (f"<icecast><security><chroot>1</chroot><changeowner><user>{NOBODY}</user>"
              f"<group>{NOGROUP}</group></changeowner></security><paths><basedir>{base}</basedir>"
              "</paths></icecast>")
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_SECURE), config, "", "0", *become],
                            cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        assert conn.recv(100).startswith(b"served as ")
    out, err = rest_of(proc)
    assert json.loads(out.strip().splitlines()[-1])["cwd"] == str(REPO)
    assert "<security><chroot> needs root: skipped" in err
    assert "<security><changeowner> needs root: skipped" in err


# ---- on-connect / on-disconnect -------------------------------------------------------------


def executable(path: Path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


def test_hook_gets_the_mount_name(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    program = executable(tmp_path / "start", f'#!/bin/sh\nprintf "%s|%s" "$#" "$1" > {seen}\n')
    assert run_hook(ON_CONNECT, program, "/live.mp3").get(timeout=20) == 0
    assert seen.read_text() == "1|/live.mp3"


def test_hook_runs_without_blocking_the_hub(tmp_path: Path) -> None:
    # The program waits for a byte the hub sends it; if running it blocked the hub, that
    # byte would never come and the program would be killed at the timeout.
    server = gevent.socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    program = executable(tmp_path / "wait", f"#!{sys.executable}\nimport socket\n"
                         f"conn = socket.create_connection(('127.0.0.1', {port}))\n"
                         "assert conn.recv(1) == b'!'\n")
    hook = run_hook(ON_CONNECT, program, "/live", timeout=20)

    def answer() -> None:
        conn, _ = server.accept()
        conn.sendall(b"!")
        conn.close()

    gevent.spawn(answer).join(timeout=20)
    assert hook.get(timeout=20) == 0
    server.close()


def test_hook_still_running_at_the_timeout_is_killed_with_one_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    program = executable(tmp_path / "hang", "#!/bin/sh\nexec sleep 60\n")
    with caplog.at_level(logging.WARNING, logger="fanout"):
        assert run_hook(ON_CONNECT, program, "/live", timeout=0.5).get(timeout=20) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"/live: <on-connect> {program} still ran after 0.5 s: killed"]


def test_hook_failures_are_one_line_each(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    failing = executable(tmp_path / "fail", "#!/bin/sh\nexit 3\n")
    not_executable = tmp_path / "plain"
    not_executable.write_text("#!/bin/sh\n")
    with caplog.at_level(logging.WARNING, logger="fanout"):
        assert run_hook("on-disconnect", failing, "/live").get(timeout=20) == 3
        assert run_hook(ON_CONNECT, str(not_executable), "/live").get(timeout=20) is None
        assert run_hook(ON_CONNECT, str(tmp_path / "missing"), "/live").get(timeout=20) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"/live: <on-disconnect> {failing} exited with status 3",
        f"/live: <on-connect> {not_executable} cannot be run: Permission denied",
        f"/live: <on-connect> {tmp_path / 'missing'} cannot be run: No such file or directory",
    ]


# ---- YP: the protocol against a directory server --------------------------------------------


def post(url: str, body: bytes) -> YpAnswer:
    """One request over a real socket, read to the end, answered as fanout will read it."""
    port = int(url.split(":")[2].split("/")[0])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as conn:
        conn.sendall(render_request(url, body, "Icecast 2.4.4"))
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    ends = head_end(data)
    assert ends is not None
    return parse_answer(parse_response_head(data[:ends[0]]))


@pytest.fixture
def directory():  # type: ignore[no-untyped-def]
    server = YpServer(touch_freq=200)
    yield server
    server.close()


LISTING = YpListing(listen_url=listen_url("radio.example", 8000, "/live.ogg"),
                    server_name="Café Radio", server_type="application/ogg", genre="jazz blues",
                    description="Late & live", url="http://radio.example/", subtype="vorbis",
                    bitrate="128", audio_info="channels=2;samplerate=44100;quality=0.4")


def test_yp_add_touch_remove_against_a_directory(directory: YpServer) -> None:
    now = 1000.0
    entry = listing_started(now, 30)
    entry = after_add(entry, post(directory.url, render_add(LISTING)), now)
    assert (entry.action, entry.due, entry.touch_interval) == ("touch", now + FIRST_TOUCH_DELAY, 200)
    [add] = directory.of("add")
    assert add.ok and add.sid == entry.sid and add.user_agent == "Icecast 2.4.4"
    assert {name: add.fields[name] for name in ("sn", "genre", "desc", "url", "listenurl", "type",
                                                "stype", "b", "cpswd")} == {
        "sn": "Café Radio", "genre": "jazz blues", "desc": "Late & live",
        "url": "http://radio.example/", "listenurl": "http://radio.example:8000/live.ogg",
        "type": "application/ogg", "stype": "vorbis", "b": "128", "cpswd": ""}
    assert add.audio_info == {"channels": "2", "samplerate": "44100", "quality": "0.4"}

    assert entry.sid is not None
    touch = render_touch(entry.sid, yp_song("Ann", "Blue"), 3, 100, "vorbis")
    entry = after_touch(entry, post(directory.url, touch), now + 5)
    assert (entry.action, entry.due) == ("touch", now + 5 + 200)
    [touched] = directory.of("touch")
    assert touched.ok and (touched.fields["st"], touched.fields["listeners"],
                           touched.fields["max_listeners"]) == ("Ann - Blue", "3", "100")

    body = removal(entry)
    assert body is not None and post(directory.url, body).ok
    assert directory.listed == {}


def test_yp_refusals_as_the_directory_answers_them(directory: YpServer) -> None:
    now = 1000.0
    placeholder = YpListing(listen_url="http://radio.example:8000/a", server_name="Stream Name",
                            server_type="audio/mpeg", genre="x")
    answer = post(directory.url, render_add(placeholder))
    assert answer == YpAnswer(False, "-1", None, "Default stream name detected, please configure "
                              "your source client, thanks!")
    assert after_add(listing_started(now, 30), answer, now).due == now + ADD_REFUSED_DELAY
    assert post(directory.url, render_touch("0b3c9c52", "", 0, 1, "")).ok is False
    directory.refuse_adds = True
    assert post(directory.url, render_add(LISTING)).message == "This server is banned"
