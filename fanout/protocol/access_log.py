"""access.log lines: the Combined Log Format plus the connection's duration, as Icecast
2.4.4 writes them:

    ip - user [21/Nov/2026:06:41:26 +0000] "GET /live HTTP/1.1" 200 12345 "referer" "agent" 42

Secrets never reach the file: query values of parameters that carry a password are
replaced with "*". Client text is escaped with ``text.log_quoted``: quotes, backslashes,
controls, line separators and bytes that are not UTF-8 become ``\\xNN``, so any request
gets its line and no request can end it early or forge another.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from fanout.protocol.dates import clf_date
from fanout.protocol.text import log_quoted

# Query parameters whose value is a credential (admin.cgi `pass`, buildm3u `password`).
_SECRET_PARAM = re.compile(r"([?&](?:[^=&]*pass[^=&]*)=)[^&]*", re.IGNORECASE)


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


def redact(target: str) -> str:
    """The request target with every password-like query value replaced by "*"."""
    return _SECRET_PARAM.sub(r"\1*", target)


def _quoted(text: str) -> str:
    return log_quoted(text) or "-"


def _request_text(record: AccessRecord) -> str:
    # A refused head may lack a target or a version (http.lenient_request): no dangling "HTTP/".
    version = f"HTTP/{record.version}" if record.version else ""
    return " ".join(part for part in (record.method, redact(record.target), version) if part)


def format_access_line(record: AccessRecord) -> str:
    """One access.log line (no newline); every field is escaped, whatever it holds."""
    request = _request_text(record)
    return (f'{record.ip} - - [{clf_date(record.started)}] "{_quoted(request)}" {record.status} '
            f'{record.sent} "{_quoted(record.referer)}" "{_quoted(record.user_agent)}" '
            f"{int(record.duration)}")
