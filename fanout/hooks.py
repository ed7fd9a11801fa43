"""``<mount><on-connect>`` and ``<on-disconnect>``: a program run when a source starts or ends.

2.4.4 (``src/source.c: source_run_script``) runs ``<program> <mount>`` with stdin, stdout
and stderr on /dev/null and its other files closed, and does not wait for it. We do the
same from a worker's gevent hub with ``gevent.subprocess`` (the hub never blocks), in a
session of its own, and wait for it in a greenlet: a program still running after
``HOOK_TIMEOUT`` seconds is killed. One log line says why when it cannot be started,
is killed, or exits with a status other than 0; nothing is logged when it succeeds.
A program that must outlive the timeout (a recorder) should start it in the background
and exit.
"""
from __future__ import annotations

import logging
import subprocess

import gevent
from gevent import subprocess as gsubprocess

log = logging.getLogger("fanout")

HOOK_TIMEOUT = 60.0  # seconds a program may run before it is killed
ON_CONNECT = "on-connect"
ON_DISCONNECT = "on-disconnect"


def run_hook(kind: str, program: str, mount: str, timeout: float = HOOK_TIMEOUT) -> gevent.Greenlet:
    """Start ``program mount`` now; the returned greenlet's value is its exit status, or
    None if it could not be started or was killed."""
    return gevent.spawn(_run, kind, program, mount, timeout)


def _run(kind: str, program: str, mount: str, timeout: float) -> int | None:
    try:
        proc = gsubprocess.Popen([program, mount], stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                 close_fds=True, start_new_session=True)
    except OSError as exc:
        log.warning("%s: <%s> %s cannot be run: %s", mount, kind, program, exc.strerror or exc)
        return None
    try:
        status: int = proc.wait(timeout=timeout)
    except gsubprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        log.warning("%s: <%s> %s still ran after %g s: killed", mount, kind, program, timeout)
        return None
    if status != 0:
        log.warning("%s: <%s> %s exited with status %d", mount, kind, program, status)
    return status
