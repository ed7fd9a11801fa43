"""Logging set-up shared by the supervisor and the workers."""
from __future__ import annotations

import logging
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
