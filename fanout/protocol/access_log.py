"""access.log lines: the Combined Log Format plus the connection's duration, as Icecast
2.4.4 writes them:

    ip - user [21/Nov/2026:06:41:26 +0000] "GET /live HTTP/1.1" 200 12345 "referer" "agent" 42

Secrets never reach the file: query values of parameters that carry a password are
replaced with "*", and quotes or control characters in client text are escaped so a
line cannot be forged.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# Query parameters whose value is a credential (admin.cgi `pass`, buildm3u `password`).
_SECRET_PARAM = re.compile(r"([?&](?:[^=&]*pass[^=&]*)=)[^&]*", re.IGNORECASE)
_UNSAFE = re.compile(r'["\\\x00-\x1f\x7f]')


@dataclass(frozen=True, slots=True)
class AccessRecord:
    ip: str
    started: float  # epoch seconds the connection was accepted
    method: str
    target: str
    version: str
    status: int
    sent: int  # bytes sent to the client
    referer: str
    user_agent: str
    duration: float  # seconds


def clf_date(ts: float) -> str:
    t = time.localtime(ts)
    return (f"{t.tm_mday:02d}/{_MONTHS[t.tm_mon - 1]}/{t.tm_year}:"
            f"{time.strftime('%H:%M:%S %z', t)}")


def redact(target: str) -> str:
    """The request target with every password-like query value replaced by "*"."""
    return _SECRET_PARAM.sub(r"\1*", target)


def _quoted(text: str) -> str:
    return _UNSAFE.sub(lambda m: f"\\x{ord(m.group()):02x}", text) or "-"


def format_access_line(record: AccessRecord) -> str:
    """One access.log line (no newline)."""
    request = f"{record.method} {redact(record.target)} HTTP/{record.version}"
    return (f'{record.ip} - - [{clf_date(record.started)}] "{_quoted(request)}" {record.status} '
            f'{record.sent} "{_quoted(record.referer)}" "{_quoted(record.user_agent)}" '
            f"{int(record.duration)}")
