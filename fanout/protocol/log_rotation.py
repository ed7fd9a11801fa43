"""When and how a log file is rotated by size, as Icecast 2.4.4 does it
(``<logging><logsize>``, ``<logarchive>``; ``src/log/log.c: _log_open``).

Before a line is written, a file whose size passed ``<logsize>`` KiB is renamed, to
``<name>.old`` (replacing the last one) or with ``<logarchive>1`` to
``<name>.<YYYYmmdd_HHMMSS>`` (local time), and the line starts a new file by the name.
Without ``<logsize>`` (or with 0) 2.4.4's start-up default holds. ``fanout.logs`` rotates
error.log and access.log, ``fanout.source_files`` the playlist log.
"""
from __future__ import annotations

from dataclasses import dataclass

from fanout.protocol.dates import archive_stamp

# 2.4.4's limit when <logsize> is not set (src/log/log.c: log_initialize), in bytes. (After
# a SIGHUP 2.4.4 sets the limit to <logsize> as given, so 0 would then mean "never": a
# quirk not copied.)
DEFAULT_ROTATE_BYTES = 1_000_000_000
OLD_SUFFIX = ".old"  # a rotated file's name without <logarchive>


@dataclass(frozen=True, slots=True)
class Rotation:
    """A log file past ``max_bytes`` is renamed before its next line (see the module doc)."""

    max_bytes: int = DEFAULT_ROTATE_BYTES
    archive: bool = False  # renamed with the time instead of to ".old"

    @classmethod
    def of(cls, logsize: int | None, logarchive: bool) -> Rotation:
        """From <logsize> (KiB; None or 0: the default) and <logarchive>."""
        return cls(logsize * 1024 if logsize else DEFAULT_ROTATE_BYTES, logarchive)

    def rotated_name(self, path: str, now: float) -> str:
        """The name the file at `path` is renamed to when rotated at `now` (epoch s)."""
        return f"{path}.{archive_stamp(now)}" if self.archive else path + OLD_SUFFIX
