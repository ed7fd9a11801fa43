"""Command line: `python -m fanout [-c icecast.xml] [--workers N] [--check-config]`.

As Icecast 2.4.4, the server refuses to run as root unless `<security><changeowner>`
names the user to drop to once the sockets are bound; `--allow-root` runs it as root
anyway (a container whose only process it is, a test).

With no config file the server runs on a built-in config (port 8000) with source, admin and
relay passwords drawn at random for this run and printed once every worker booted: never
a well-known default, and never printed by a server that then fails to start.

A bad argument or config is one line on stderr and exit status 2; a failure to start
(a socket that cannot be bound, a worker that cannot boot) one line and status 3.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import secrets
import sys
from typing import NoReturn

from fanout import __version__, logs
from fanout import supervisor as supervisor_package
from fanout.config import Config, ConfigError, default_config
from fanout.counters import MAX_WORKERS
from fanout.protocol.yp import FIRST_ADD_DELAY
from fanout.startup import EXIT_CONFIG, StartupError, load_config
from fanout.supervisor import DEFAULT_TIMEOUT, Supervisor

log = logging.getLogger("fanout")

# Highest TCP port number.
MAX_PORT = 65535


class ArgumentParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line and status 2 (argparse would print its usage first)."""
        self.exit(EXIT_CONFIG, f"fanout: error: {message} (see --help)\n")


def port_number(text: str) -> int:
    port = int(text) if text.strip().isdigit() else -1
    if not 0 <= port <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0 to {MAX_PORT})")
    return port


def worker_count(text: str) -> int:
    count = int(text) if text.strip().isdigit() else 0
    if not 1 <= count <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers (1 to {MAX_WORKERS})")
    return count


def seconds(text: str, positive: bool = False) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a number of seconds ({'> 0' if positive else '0 or more'})")
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = ArgumentParser(prog="fanout", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", metavar="FILE", help="icecast.xml to load")
    parser.add_argument("--workers", type=worker_count, default=min(os.cpu_count() or 1, MAX_WORKERS),
                        help="worker processes (default: number of CPUs)")
    parser.add_argument("--port", type=port_number, default=8000,
                        help="port of the built-in config (ignored with -c)")
    parser.add_argument("--drain", type=seconds, default=0.0, metavar="SECONDS",
                        help="on SIGTERM keep serving this long with /health answering 503, "
                             "so a load balancer stops sending listeners first (default 0)")
    parser.add_argument("--timeout", type=lambda text: seconds(text, positive=True),
                        default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help="a worker whose heartbeat is older than this is killed and "
                             f"replaced (default {DEFAULT_TIMEOUT:.0f})")
    parser.add_argument("--allow-root", action="store_true",
                        help="run as root even without <security><changeowner> (Icecast "
                             "refuses to; so does fanout without this)")
    parser.add_argument("--yp-add-delay", type=seconds, default=FIRST_ADD_DELAY, metavar="SECONDS",
                        help="seconds a mount is public before it is listed in the <directory> "
                             f"servers (default {FIRST_ADD_DELAY}, as Icecast)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--check-config", action="store_true",
                        help="load the config, print its warnings and exit (2 if invalid)")
    return parser.parse_args(argv)


def built_in_config(port: int) -> tuple[Config, str]:
    """The built-in config with fresh random passwords, and the lines that tell them."""
    passwords = {name: secrets.token_urlsafe(12) for name in ("source", "admin", "relay")}
    config = default_config(passwords["source"], passwords["admin"], passwords["relay"], port=port)
    greeting = (f"fanout: built-in config; source password: {passwords['source']}\n"
                f"fanout: admin user: {config.authentication.admin_user}, "
                f"admin password: {passwords['admin']}\n"
                f"fanout: relay user: {config.authentication.relay_user}, "
                f"relay password: {passwords['relay']}")
    return config, greeting


def logdir_usable(config: Config) -> bool:
    """No logdir (stderr only) or a directory we can create log files in. With
    <chroot> the logdir lies inside the new root: it is checked when the files are
    opened there (as the <changeowner> user, who may not be us)."""
    logdir = config.paths.logdir
    if logdir is None or config.security.chroot:
        return True
    return os.path.isdir(logdir) and os.access(logdir, os.W_OK | os.X_OK)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup("supervisor")
    try:
        config = load_config(args.config) if args.config else None
    except ConfigError as exc:
        print(f"fanout: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # Printed, not logged: the log's flood bound would hide all but the first few, and each
    # names a different element of the operator's own file.
    for warning in config.warnings if config else ():
        print(f"fanout: warning: {warning}", file=sys.stderr)
    if config is not None and not logdir_usable(config):
        print(f"fanout: config error: icecast/paths/logdir: {config.paths.logdir!r} is not valid: "
              "expected a writable directory", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        print(f"fanout: {args.config or 'built-in config'} is valid", flush=True)
        return 0
    greeting = ""
    if config is None:
        config, greeting = built_in_config(args.port)
    logs.setup("supervisor", config.logging.loglevel)
    supervisor = Supervisor(config, args.config, args.workers, drain=args.drain,
                            timeout=args.timeout,
                            on_ready=(lambda: print(greeting, flush=True)) if greeting else None,
                            # read now, not at import: a test may point it elsewhere
                            worker_module=supervisor_package.WORKER_MODULE,
                            allow_root=args.allow_root, yp_add_delay=args.yp_add_delay)
    try:
        return supervisor.run()
    except StartupError as exc:
        print(f"fanout: {exc.message}", file=sys.stderr)
        return exc.status
