"""Command line: `python -m fanout [-c icecast.xml] [--workers N] [--check-config]`.

With no config file the server runs on a built-in config (port 8000) with source, admin and
relay passwords drawn at random for this run and printed once: never a well-known default.
"""
from __future__ import annotations

import argparse
import logging
import os
import secrets
import sys

from fanout import logs
from fanout.config import Config, ConfigError, default_config, load_config

log = logging.getLogger("fanout")

EXIT_CONFIG = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fanout", description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", metavar="FILE", help="icecast.xml to load")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="worker processes (default: number of CPUs)")
    parser.add_argument("--port", type=int, default=8000,
                        help="port of the built-in config (ignored with -c)")
    parser.add_argument("--drain", type=float, default=0.0, metavar="SECONDS",
                        help="on SIGTERM keep serving this long with /health answering 503, "
                             "so a load balancer stops sending listeners first (default 0)")
    parser.add_argument("--check-config", action="store_true",
                        help="load the config, print its warnings and exit (2 if invalid)")
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 64:
        parser.error("--workers must be between 1 and 64")
    return args


def built_in_config(port: int) -> Config:
    passwords = {name: secrets.token_urlsafe(12) for name in ("source", "admin", "relay")}
    config = default_config(passwords["source"], passwords["admin"], passwords["relay"], port=port)
    print(f"fanout: built-in config; source password: {passwords['source']}", flush=True)
    print(f"fanout: admin user: {config.authentication.admin_user}, "
          f"admin password: {passwords['admin']}", flush=True)
    print(f"fanout: relay user: {config.authentication.relay_user}, "
          f"relay password: {passwords['relay']}", flush=True)
    return config


def logdir_usable(logdir: str | None) -> bool:
    """No logdir (stderr only) or a directory we can create log files in."""
    return logdir is None or (os.path.isdir(logdir) and os.access(logdir, os.W_OK | os.X_OK))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup("supervisor")
    try:
        config = load_config(args.config) if args.config else None
    except ConfigError as exc:
        print(f"fanout: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    for warning in config.warnings if config else ():
        log.warning("%s", warning)
    if config is not None and not logdir_usable(config.paths.logdir):
        print(f"fanout: config error: icecast/paths/logdir: {config.paths.logdir!r} is not valid: "
              "expected a writable directory", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        print(f"fanout: {args.config or 'built-in config'} is valid", flush=True)
        return 0
    if config is None:
        config = built_in_config(args.port)
    logs.setup("supervisor", config.logging.loglevel)
    from fanout.supervisor import Supervisor

    try:
        return Supervisor(config, args.config, args.workers, drain=args.drain).run()
    except OSError as exc:
        print(f"fanout: {exc.strerror or exc}", file=sys.stderr)
        return 1
