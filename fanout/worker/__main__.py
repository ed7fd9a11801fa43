"""Entry point of a worker process: `python -m fanout.worker` (started by the supervisor)."""
from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys

from fanout import control, core, logs
from fanout.counters import Counters
from fanout.worker.main import WorkerProcess

# prctl(PR_SET_PDEATHSIG): the kernel signals us if the supervisor dies without telling us.
PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the control channel's end-of-file still stops us


def attach_doorbells(table_fd: int, eventfds: str) -> core.Doorbells:
    """Every worker's doorbell (the supervisor's table and eventfds, inherited); the
    inherited fds are closed once the Doorbells hold their own copies."""
    fds = [int(fd) for fd in eventfds.split(",")]
    doorbells = core.Doorbells.attach(table_fd, fds)
    for fd in (table_fd, *fds):
        os.close(fd)
    return doorbells


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fanout.worker")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--counters-fd", type=int, required=True)
    parser.add_argument("--listen-fds", required=True)
    parser.add_argument("--doorbells-fd", type=int, required=True)
    parser.add_argument("--eventfds", required=True)
    parser.add_argument("--drain", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, required=True)
    args = parser.parse_args(argv)
    die_with_parent()
    logs.setup(f"worker{args.index}")
    process = WorkerProcess(args.index, control.Channel.from_fd(args.control_fd),
                            Counters.attach(args.counters_fd),
                            attach_doorbells(args.doorbells_fd, args.eventfds),
                            [int(fd) for fd in args.listen_fds.split(",") if fd],
                            drain=args.drain, timeout=args.timeout)
    return process.run()


if __name__ == "__main__":
    sys.exit(main())
