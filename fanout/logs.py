"""Logging set-up shared by the supervisor and the workers."""
from __future__ import annotations

import logging
import os
import sys

# Icecast's loglevel 1..4 (error, warn, info, debug) mapped to Python levels.
LEVELS = {1: logging.ERROR, 2: logging.WARNING, 3: logging.INFO, 4: logging.DEBUG}


def setup(role: str, loglevel: int = 3) -> None:
    """One line per event on stderr: time, level, process role, message."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        f"[%(asctime)s] %(levelname)s {role} %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(LEVELS.get(loglevel, logging.INFO))


# -- log files (<paths><logdir>) ---------------------------------------------------------------
#
# error.log takes every log record at the configured level, besides stderr; access.log takes
# one Combined Log Format line per finished connection from the "fanout.access" logger.
# Several processes append to the same files: each line is one write() on an O_APPEND
# file, so lines never interleave. SIGUSR1 (after logrotate moved the files) makes
# `reopen_files` close them; the next line opens the file anew at its configured path.

ACCESS_LOGGER = "fanout.access"
_file_handlers: list[logging.FileHandler] = []


def configure_files(logdir: str | None, errorlog: str, accesslog: str, loglevel: int,
                    role: str) -> None:
    """Log to `logdir`/`errorlog` and `logdir`/`accesslog`; without a logdir, stderr only."""
    root, access = logging.getLogger(), logging.getLogger(ACCESS_LOGGER)
    for handler in _file_handlers:
        handler.close()
        root.removeHandler(handler)
        access.removeHandler(handler)
    _file_handlers.clear()
    root.setLevel(LEVELS.get(loglevel, logging.INFO))
    access.propagate = False  # access lines go to access.log only, never to stderr
    access.setLevel(logging.INFO)
    if logdir is None:
        return
    error_file = logging.FileHandler(os.path.join(logdir, errorlog), delay=True)
    error_file.setFormatter(logging.Formatter(
        f"[%(asctime)s] %(levelname)s {role} %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S"))
    access_file = logging.FileHandler(os.path.join(logdir, accesslog), delay=True)
    access_file.setFormatter(logging.Formatter("%(message)s"))
    root.addHandler(error_file)
    access.addHandler(access_file)
    _file_handlers.extend((error_file, access_file))


def reopen_files() -> None:
    """Close the log files; each is reopened (by name) when its next line is written."""
    for handler in _file_handlers:
        handler.close()


def access(line: str) -> None:
    logging.getLogger(ACCESS_LOGGER).info("%s", line)
