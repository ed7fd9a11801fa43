"""packaging/: the systemd unit, the container file and the logrotate snippet are valid and
agree with the code they run, checked with the real tools (systemd-analyze, logrotate) and,
where they touch the server (health check, log reopening), against a real fanout."""
from __future__ import annotations

import getpass
import grp
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from fanout import cli, supervisor
from tests.support.admin import get
from tests.support.server import icecast_xml, start_fanout
from tests.support.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
PACKAGING = REPO / "packaging"
UNIT = PACKAGING / "fanout.service"
CONTAINERFILE = PACKAGING / "Containerfile"
ENTRYPOINT = PACKAGING / "container-entrypoint.sh"
LOGROTATE = PACKAGING / "logrotate" / "fanout"

# Where the unit expects the venv's console script (README, "Running in production").
INSTALLED_PROGRAM = "/opt/fanout/bin/fanout"
# `systemd-analyze security --threshold` (tenths of its exposure level): the unit scores
# 1.5 ("OK") on systemd 252; dropping almost any of its sandbox options goes over this.
EXPOSURE_LIMIT = 15
# The README's scale scenario holds 20,000 listeners: one worker may get most of them.
NOFILE_FLOOR = 20_000
# Where the unit and the image read the config.
CONFIG = "/etc/fanout/icecast.xml"
# The postrotate command the snippet ships (the logrotate test swaps it for a plain kill).
POSTROTATE = ("if systemctl --quiet is-active fanout.service; then systemctl kill "
              "--kill-who=main --signal=USR1 fanout.service; fi")

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed (apt: systemd)")
needs_logrotate = pytest.mark.skipif(
    shutil.which("logrotate", path="/usr/sbin:/usr/bin:/sbin:/bin") is None,
    reason="logrotate not installed (apt: logrotate)")


def run(*args: str, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kwargs)


# -- the systemd unit ------------------------------------------------------------------------


def unit_values(key: str, section: str = "Service") -> list[str]:
    """Every value of `key` in `section` of the unit, in order (keys may repeat)."""
    values, current = [], ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section and line.partition("=")[0] == key:
            values.append(line.partition("=")[2])
    return values


def unit_value(key: str) -> str:
    values = unit_values(key)
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


@pytest.fixture
def verifiable_unit(tmp_path: Path) -> Path:
    """The unit, with its program at a path that exists here (verify checks that it does)."""
    program = tmp_path / "bin" / "fanout"
    program.parent.mkdir()
    program.write_text("#!/bin/sh\nexit 0\n")
    program.chmod(0o755)
    text = UNIT.read_text()
    assert INSTALLED_PROGRAM in text
    unit = tmp_path / "fanout.service"
    unit.write_text(text.replace(INSTALLED_PROGRAM, str(program)))
    return unit


@needs_systemd_analyze
def test_unit_passes_systemd_analyze_verify_without_a_warning(verifiable_unit):
    result = run("systemd-analyze", "verify", str(verifiable_unit))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@needs_systemd_analyze
def test_verify_reports_what_this_systemd_does_not_know(verifiable_unit):
    """The check above can fail: a setting systemd 252 lacks is reported (it only warns)."""
    bad = verifiable_unit.with_name("bad.service")
    bad.write_text(verifiable_unit.read_text().replace("Type=notify", "Type=notify-reload"))
    result = run("systemd-analyze", "verify", str(bad))
    assert "Failed to parse service type" in result.stderr


@needs_systemd_analyze
def test_unit_sandbox_exposure_stays_ok(verifiable_unit):
    result = run("systemd-analyze", "security", "--offline=true",
                 f"--threshold={EXPOSURE_LIMIT}", str(verifiable_unit))
    assert result.returncode == 0, result.stdout[-800:] + result.stderr


@needs_systemd_analyze
def test_exposure_check_sees_a_dropped_sandbox_option(verifiable_unit):
    weak = verifiable_unit.with_name("weak.service")
    weak.write_text(verifiable_unit.read_text().replace("ProtectKernelLogs=yes\n", ""))
    result = run("systemd-analyze", "security", "--offline=true",
                 f"--threshold={EXPOSURE_LIMIT}", str(weak))
    assert result.returncode != 0


def test_unit_waits_for_readiness_and_reloads_by_sighup():
    assert unit_value("Type") == "notify"  # fanout/sdnotify.py sends READY=1
    assert unit_values("ExecReload") == [f"{INSTALLED_PROGRAM} -c {CONFIG} --check-config",
                                         "/bin/kill -HUP $MAINPID"]
    assert unit_value("ExecStart") == f"{INSTALLED_PROGRAM} -c {CONFIG}"


def test_unit_lets_the_supervisor_stop_its_workers():
    assert unit_value("KillMode") == "mixed"  # SIGTERM to the main process only
    assert float(unit_value("TimeoutStopSec")) > supervisor.STOP_GRACE


def test_unit_does_not_restart_what_a_restart_cannot_fix():
    assert unit_value("Restart") == "on-failure"
    prevented = {int(status) for status in unit_value("RestartPreventExitStatus").split()}
    assert prevented == {cli.EXIT_CONFIG, supervisor.EXIT_CONFIG, supervisor.EXIT_WORKER_BOOT}


def test_unit_runs_unprivileged_with_only_the_low_port_capability():
    assert unit_value("User") not in ("root", "0")
    assert unit_value("AmbientCapabilities") == "CAP_NET_BIND_SERVICE"
    assert unit_value("CapabilityBoundingSet") == "CAP_NET_BIND_SERVICE"
    assert unit_value("NoNewPrivileges") == "yes"


def test_unit_file_limit_is_one_value_for_soft_and_hard():
    # "N" sets both limits (no "soft:hard"), so fanout has nothing to raise at start.
    assert int(unit_value("LimitNOFILE")) >= NOFILE_FLOOR


# -- the container file ----------------------------------------------------------------------

# Dockerfile instructions (https://docs.docker.com/reference/dockerfile/).
INSTRUCTIONS = {"ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM",
                "HEALTHCHECK", "LABEL", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER",
                "VOLUME", "WORKDIR"}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    args: str
    line: int


def instructions(text: str) -> list[Instruction]:
    """The Containerfile's instructions, continuation lines joined, comments dropped."""
    result: list[Instruction] = []
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        result.append(Instruction(keyword.upper(), " ".join(args.split()), start))
        pending = ""
    assert not pending, "the last instruction ends with a line continuation"
    return result


def stages(text: str) -> list[list[Instruction]]:
    """The instructions grouped by build stage, each starting with its FROM."""
    groups: list[list[Instruction]] = []
    for instruction in instructions(text):
        if instruction.keyword == "FROM":
            groups.append([])
        assert groups, f"line {instruction.line}: {instruction.keyword} before the first FROM"
        groups[-1].append(instruction)
    return groups


def copy_parts(instruction: Instruction) -> tuple[dict[str, str], list[str], str]:
    """COPY's --flags, sources and destination."""
    words = shlex.split(instruction.args)
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    paths = [w for w in words if not w.startswith("--")]
    return flags, paths[:-1], paths[-1]


def test_containerfile_has_only_known_instructions():
    found = instructions(CONTAINERFILE.read_text())
    assert found and {i.keyword for i in found} <= INSTRUCTIONS


def test_instruction_parser_sees_an_unknown_instruction():
    assert [i.keyword for i in instructions("FROM x\n# c\nRUN a \\\n  b\nCOPYY a b\n")] == [
        "FROM", "RUN", "COPYY"]


def test_containerfile_copies_only_files_of_the_repository():
    ignored = [line for line in (PACKAGING / "Containerfile.dockerignore").read_text().splitlines()
               if line and not line.startswith("#")]
    copied = []
    for instruction in instructions(CONTAINERFILE.read_text()):
        if instruction.keyword in ("COPY", "ADD"):
            flags, sources, _ = copy_parts(instruction)
            if "from" not in flags:
                copied += sources
    assert copied
    for source in copied:
        assert (REPO / source).exists(), source
        assert source not in ignored, source


def test_containerfile_copies_from_earlier_stages_only():
    named: set[str] = set()
    for stage in stages(CONTAINERFILE.read_text()):
        for instruction in stage:
            if instruction.keyword == "COPY" and "from" in copy_parts(instruction)[0]:
                assert copy_parts(instruction)[0]["from"] in named, instruction
        match = re.fullmatch(r"\S+ AS (\S+)", stage[0].args, re.IGNORECASE)
        if match:
            named.add(match.group(1))
    assert named, "no build stage"


def test_image_runs_as_a_non_root_user():
    final = stages(CONTAINERFILE.read_text())[-1]
    users = [i for i in final if i.keyword == "USER"]
    starts = [i for i in final if i.keyword in ("ENTRYPOINT", "CMD")]
    assert users and starts
    assert users[-1].args.split(":")[0] not in ("root", "0")
    assert users[-1].line < min(i.line for i in starts)


def test_image_exposes_the_built_in_port():
    exposed = [i.args for i in instructions(CONTAINERFILE.read_text()) if i.keyword == "EXPOSE"]
    assert exposed == [str(cli.parse_args([]).port)]


def health_check_command() -> list[str]:
    (check,) = [i for i in instructions(CONTAINERFILE.read_text()) if i.keyword == "HEALTHCHECK"]
    _, _, command = check.args.partition("CMD ")
    return json.loads(command)


def test_health_check_passes_on_a_live_server_and_fails_on_a_dead_one(tmp_path):
    program, *args = health_check_command()
    assert program == "python3"  # the image's, run here as the test's interpreter
    server = start_fanout(icecast_xml(), tmp_path, workers=1)
    built_in = f"http://127.0.0.1:{cli.parse_args([]).port}/health"
    assert built_in in args[-1]
    command = [sys.executable, *args[:-1], args[-1].replace(built_in, f"{server.url}/health")]
    try:
        assert run(*command).returncode == 0
    finally:
        assert server.stop() == 0
    assert run(*command).returncode != 0


@pytest.fixture
def fake_fanout(tmp_path: Path) -> dict[str, str]:
    """An environment whose `fanout` prints its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "fanout").write_text('#!/bin/sh\necho "$@"\n')
    (bin_dir / "fanout").chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "FANOUT_CONFIG": str(tmp_path / "icecast.xml")}


def test_entrypoint_runs_the_mounted_config(fake_fanout):
    Path(fake_fanout["FANOUT_CONFIG"]).write_text("<icecast/>")
    result = run("sh", str(ENTRYPOINT), "--workers", "2", env=fake_fanout)
    assert result.stdout == f"-c {fake_fanout['FANOUT_CONFIG']} --workers 2\n"


def test_entrypoint_falls_back_to_the_built_in_config(fake_fanout):
    result = run("sh", str(ENTRYPOINT), "--workers", "2", env=fake_fanout)
    assert result.stdout == "--workers 2\n"


def test_entrypoint_looks_where_the_image_documents():
    assert f'"${{FANOUT_CONFIG:-{CONFIG}}}"' in ENTRYPOINT.read_text()
    copies = [copy_parts(i) for i in instructions(CONTAINERFILE.read_text()) if i.keyword == "COPY"]
    assert ({}, ["packaging/container-entrypoint.sh"], "/usr/local/bin/fanout-entrypoint") in copies


# -- the logrotate snippet -------------------------------------------------------------------


def logrotate_copy(tmp_path: Path, logdir: Path, postrotate: str) -> Path:
    """The snippet for `logdir`, rotating as the current user, with `postrotate` run instead
    of its systemctl line (there is no systemd here)."""
    user, group = getpass.getuser(), grp.getgrgid(os.getgid()).gr_name
    text = LOGROTATE.read_text()
    logs_directory = "/var/log/" + unit_value("LogsDirectory")
    owner = f"{unit_value('User')} {unit_value('Group')}"
    for expected in (f"{logs_directory}/*.log {{", f"su {owner}\n", f"create 0640 {owner}\n",
                     POSTROTATE):
        assert expected in text, expected
    text = (text.replace(logs_directory, str(logdir)).replace(owner, f"{user} {group}")
            .replace(POSTROTATE, postrotate))
    conf = tmp_path / "logrotate.conf"
    conf.write_text(text)
    return conf


@needs_logrotate
def test_logrotate_snippet_parses(tmp_path):
    conf = logrotate_copy(tmp_path, tmp_path, "true")
    result = run("logrotate", "-d", "-s", str(tmp_path / "state"), str(conf))
    assert result.returncode == 0 and "error:" not in result.stderr, result.stderr


@needs_logrotate
def test_logrotate_snippet_makes_a_running_server_reopen_its_logs(tmp_path):
    logdir = tmp_path / "logs"
    logdir.mkdir()
    server = start_fanout(icecast_xml(extra=f"""<paths><logdir>{logdir}</logdir></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog></logging>"""),
                          tmp_path, workers=2)
    try:
        get(server, "/health", authorization=None)
        wait_for(lambda: "GET /health" in read(logdir / "access.log"), 5, "the first access line")
        conf = logrotate_copy(tmp_path, logdir, f"kill -USR1 {server.proc.pid}")
        result = run("logrotate", "-f", "-s", str(tmp_path / "state"), str(conf))
        assert result.returncode == 0, result.stderr
        wait_for(lambda: "SIGUSR1: log files reopened" in read(logdir / "error.log"), 5,
                 "the supervisor's line in the new error.log")
        # A worker may write one more line into the old file before it has the signal.
        wait_for(lambda: get(server, "/metrics", authorization=None)
                 and "GET /metrics" in read(logdir / "access.log"), 5, "a line in the new access.log")
        assert "GET /health" in read(logdir / "access.log.1")  # delaycompress: still plain
    finally:
        assert server.stop() == 0, server.output()


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""
