"""Reading a test server's log files (<paths><logdir>)."""
from __future__ import annotations

from pathlib import Path


def messages(logdir: Path, logger: str) -> list[str]:
    """The messages of error.log lines from `logger`, without time, level and process."""
    path = logdir / "error.log"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    marker = f" {logger}: "
    return [line.split(marker, 1)[1] for line in lines if marker in line]
