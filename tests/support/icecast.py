"""The real Icecast 2.4.4 (`icecast2`) for interop tests, with the test passwords.

Icecast refuses to run as root, so as root it runs as the `icecast2` user in a temp dir
that user owns (the launcher pieces come from `fanout.bench.icecast`).
"""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from fanout.bench.icecast import ICECAST_SHARE, ICECAST_USER, icecast_binary, raise_nofile_limit
from fanout.bench.serving import ServerProcess, ServerStartError, free_port
from tests.support.server import ADMIN_PASSWORD, RELAY_PASSWORD, SOURCE_PASSWORD

needs_icecast2 = pytest.mark.skipif(shutil.which("icecast2", path="/usr/bin:/usr/sbin") is None,
                                    reason="icecast2 not installed")


def icecast2_xml(port: int, workdir: Path, mounts: str = "", extra: str = "") -> str:
    return f"""<icecast>
  <hostname>127.0.0.1</hostname>
  <limits><clients>100</clients><sources>8</sources><source-timeout>10</source-timeout>
    <burst-size>65536</burst-size></limits>
  <authentication>
    <source-password>{SOURCE_PASSWORD}</source-password>
    <relay-password>{RELAY_PASSWORD}</relay-password>
    <admin-user>admin</admin-user><admin-password>{ADMIN_PASSWORD}</admin-password>
  </authentication>
  <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>
  {mounts}
  {extra}
  <paths><basedir>{ICECAST_SHARE}</basedir><logdir>{workdir}</logdir>
    <webroot>{ICECAST_SHARE / "web"}</webroot><adminroot>{ICECAST_SHARE / "admin"}</adminroot>
    <pidfile>{workdir / "icecast.pid"}</pidfile></paths>
  <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog>
    <loglevel>4</loglevel></logging>
  <security><chroot>0</chroot></security>
</icecast>
"""


# Attempts with a fresh port when the one found free was taken before icecast2 bound it
# (tests run in parallel, each starting servers).
PORT_ATTEMPTS = 3


def start_icecast2(mounts: str = "", extra: str = "", port: int = 0) -> ServerProcess:
    """Start icecast2 on `port` (0: a free one) and return it once it answers HTTP."""
    for attempt in range(1, PORT_ATTEMPTS + 1):
        try:
            return _start_icecast2(mounts, extra, port)
        except ServerStartError:
            if port or attempt == PORT_ATTEMPTS:
                raise
    raise AssertionError("unreachable")


def _start_icecast2(mounts: str, extra: str, port: int) -> ServerProcess:
    user = pwd.getpwnam(ICECAST_USER) if os.geteuid() == 0 else None
    workdir = Path(tempfile.mkdtemp(prefix="fanout-test-icecast-"))
    port = port or free_port()
    config = workdir / "icecast.xml"
    config.write_text(icecast2_xml(port, workdir, mounts, extra))
    if user is not None:
        for path in (workdir, config):
            os.chown(path, user.pw_uid, user.pw_gid)
    log_path = workdir / "stdout.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [icecast_binary(), "-c", str(config)], stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, cwd=workdir, preexec_fn=raise_nofile_limit,
            user=user.pw_uid if user else None, group=user.pw_gid if user else None,
            extra_groups=[] if user else None)
    server = ServerProcess("icecast", process, "127.0.0.1", port, SOURCE_PASSWORD, workdir,
                           log_path)
    try:
        server.wait_until_serving()
    except Exception:
        server.stop()
        raise
    return server
