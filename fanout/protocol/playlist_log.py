"""playlist.log lines (``<logging><playlistlog>``), as Icecast 2.4.4 writes them
(``src/logging.c: logging_playlist``): one per title change,

    21/Nov/2026:06:41:26 +0000|/live.mp3|42|Artist - Title

local time in the Common Log Format, the mount, its listeners then, and the title as
the stream gives it ("artist - title" for Ogg comments). "The format MAY CHANGE OVER
TIME", 2.4.4 says; it has not since. Controls and line separators in the title are
escaped (``text.log_safe``), so a title cannot forge a line.
"""

from __future__ import annotations

from fanout.protocol.access_log import clf_date
from fanout.protocol.text import log_safe

# 2.4.4 writes a log line into 1024 bytes, its NUL included: longer titles are cut.
MAX_LINE_BYTES = 1023


def playlist_line(when: float, mount: str, listeners: int, title: str) -> str:
    """One playlist.log line, without its newline, at most MAX_LINE_BYTES of UTF-8."""
    line = f"{clf_date(when)}|{log_safe(mount)}|{listeners}|{log_safe(title)}"
    encoded = line.encode("utf-8")
    if len(encoded) <= MAX_LINE_BYTES:
        return line
    return encoded[:MAX_LINE_BYTES].decode("utf-8", "ignore")  # never half a character
