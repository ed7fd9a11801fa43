"""Dates as Icecast writes them, with English names whatever the locale. Pure: each
function converts the epoch seconds it is given (no clock is read here).

- `http_date`: RFC 1123 in GMT, for the `Date` header (`Sat, 21 Nov 2026 05:24:18 GMT`).
- `local_date`: stats' `server_start` / `stream_start`, local time with the offset.
- `iso_date`: stats' `*_iso8601`, local time.
- `clf_date`: access.log's Common Log Format date, local time.
- `archive_stamp`: a log rotated with `<logarchive>1` is named with it, local time.
"""
from __future__ import annotations

import time

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(now: float) -> str:
    """Return ``now`` as an RFC 1123 GMT date, with English names whatever the locale."""
    t = time.gmtime(now)
    return (f"{DAYS[t.tm_wday]}, {t.tm_mday:02d} {MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def local_date(ts: float) -> str:
    """Icecast's `server_start`/`stream_start` format, in local time, English names."""
    t = time.localtime(ts)
    return (f"{DAYS[t.tm_wday]}, {t.tm_mday:02d} {MONTHS[t.tm_mon - 1]} {t.tm_year} "
            f"{time.strftime('%H:%M:%S %z', t)}")


def iso_date(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(ts))


def clf_date(ts: float) -> str:
    """access.log's date: `21/Nov/2026:06:41:26 +0000`, local time."""
    t = time.localtime(ts)
    return (f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{time.strftime('%H:%M:%S %z', t)}")


def archive_stamp(ts: float) -> str:
    """A rotated log's suffix with <logarchive>1, local time (2.4.4's "%Y%m%d_%H%M%S")."""
    return time.strftime("%Y%m%d_%H%M%S", time.localtime(ts))
