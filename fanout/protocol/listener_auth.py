"""Listener authentication on the wire: the auth server exchange and the manageauth answer.

Theory of operation (Icecast 2.4.4 ``<authentication type="url">``, ``src/auth_url.c``,
confirmed against the real icecast2). Before a listener gets anything, the server POSTs
``listener_add`` form data to the auth server; when a let-in listener leaves it POSTs
``listener_remove`` (the same facts plus ``duration``). Every value is escaped with Icecast's
own rule: each byte that is not an ASCII letter or digit becomes ``%xx`` in lowercase hex
(so ``127.0.0.1`` is sent as ``127%2e0%2e0%2e1``); a missing User-Agent is a raw ``-``.
The answer's status and body are ignored: the listener is let in iff one line of the
response head *starts with* the configured ``auth_header``, compared without regard to
case and including the line's own CRLF (so the default ``icecast-auth-user: 1\\r\\n`` must
match a whole line, while a configured value is a prefix). A line starting with the
``timelimit_header`` gives the seconds the listener may stay; ``icecast-auth-message:``
gives a reason for the log.

Pure: this module builds request bytes and reads response bytes; the worker owns the
socket (``fanout/worker/listener_auth.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, Sequence
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape, quoteattr

from fanout.protocol.auth import basic_authorization
from fanout.protocol.http import TEXT_ENCODING, TEXT_ERRORS
from fanout.protocol.numbers import saturated_int
from fanout.protocol.stats_xml import XML_DECLARATION
from fanout.protocol.upstream import find_head_end

# Bytes Icecast's util_url_escape leaves as they are: ASCII letters and digits only.
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
NO_AGENT = "-"  # sent unescaped when the listener gave no User-Agent (2.4.4)
MESSAGE_HEADER = "icecast-auth-message: "
FORM_TYPE = "application/x-www-form-urlencoded"
DEFAULT_PORTS = {"http": 80, "https": 443}
# /admin/manageauth outcomes, worded as 2.4.4's.
USER_ADDED = "User added"
USER_EXISTS = "User already exists - not added"
ADD_FAILED = "User add failed - check the icecast error log"
USER_DELETED = "User deleted"
DELETE_FAILED = "User delete failed - check the icecast error log"
_DIGITS = re.compile(r"\s*([0-9]+)")


@dataclass(frozen=True, slots=True)
class ListenerFacts:
    """What the auth server is told about a listener."""

    server: str  # <hostname>
    port: int  # the server's port: its first listen socket's
    client: int  # the connection id (also /admin/listclients' ID)
    mount: str  # the request target as sent: path and query
    user: str  # from the listener's Basic credentials; "" when none
    password: str
    ip: str
    agent: str | None  # User-Agent; None when absent


@dataclass(frozen=True, slots=True)
class AuthTarget:
    """Where to POST: an ``http://`` or ``https://`` URL taken apart."""

    tls: bool
    host: str
    port: int
    host_header: str  # host[:port] as the URL wrote it
    path: str  # path and query; "/" when the URL has none
    credentials: tuple[str, str] | None  # the URL's user:password, if any


@dataclass(frozen=True, slots=True)
class Verdict:
    """The auth server's answer to a listener_add."""

    accepted: bool
    timelimit: int | None = None  # seconds the listener may stay connected
    message: str | None = None  # icecast-auth-message: a reason, for the log


def url_escape(text: str) -> str:
    """Escape ``text`` as Icecast does: every byte but ASCII letters and digits as %xx."""
    raw = text.encode(TEXT_ENCODING, TEXT_ERRORS)
    return "".join(chr(byte) if byte in _SAFE else f"%{byte:02x}" for byte in raw)


def listener_add_form(facts: ListenerFacts, passed: Sequence[tuple[str, str]] = ()) -> bytes:
    """The listener_add POST body; ``passed`` are the listener headers named by the
    ``headers`` option, as (header_prefix + name, value), appended in that order."""
    return _form("listener_add", [*_where(facts), *_who(facts)], facts.agent, passed)


def listener_remove_form(facts: ListenerFacts, duration: int) -> bytes:
    """The listener_remove POST body; ``duration`` is whole seconds connected."""
    user, password, ip = _who(facts)
    return _form("listener_remove", [*_where(facts), user, password,
                                     ("duration", str(duration)), ip], facts.agent)


def _where(facts: ListenerFacts) -> list[tuple[str, str]]:
    return [("server", facts.server), ("port", str(facts.port)), ("client", str(facts.client)),
            ("mount", facts.mount)]


def _who(facts: ListenerFacts) -> list[tuple[str, str]]:
    return [("user", facts.user), ("pass", facts.password), ("ip", facts.ip)]


def _form(action: str, fields: Iterable[tuple[str, str]], agent: str | None,
          passed: Iterable[tuple[str, str]] = ()) -> bytes:
    """The action, ``fields``, the agent, then ``passed``: names and the action as they
    are (2.4.4 writes them into its format string), values escaped."""
    pairs = [f"action={action}", *(f"{name}={url_escape(value)}" for name, value in fields)]
    pairs.append(f"agent={NO_AGENT if agent is None else url_escape(agent)}")
    pairs += [f"{name}={url_escape(value)}" for name, value in passed]
    return "&".join(pairs).encode(TEXT_ENCODING, TEXT_ERRORS)


def parse_target(url: str) -> AuthTarget:
    """Take an auth server URL apart; raises ValueError unless it is http(s) with a host."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError(f"not an http:// or https:// URL: {url!r}")
    port = parts.port or DEFAULT_PORTS[parts.scheme]  # .port raises ValueError if bad
    credentials = None
    if parts.username is not None:
        credentials = (unquote(parts.username), unquote(parts.password or ""))
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return AuthTarget(parts.scheme == "https", parts.hostname, port,
                      parts.netloc.rpartition("@")[2], path, credentials)


def render_post(target: AuthTarget, form: bytes, user_agent: str,
                credentials: tuple[str, str] | None) -> bytes:
    """The whole POST request (head and form) to send to the auth server."""
    lines = [f"POST {target.path} HTTP/1.1", f"Host: {target.host_header}",
             f"User-Agent: {user_agent}", "Accept: */*"]
    if credentials is not None:
        lines.append(f"Authorization: {basic_authorization(*credentials)}")
    lines += [f"Content-Type: {FORM_TYPE}", f"Content-Length: {len(form)}", "Connection: close"]
    head = "".join(f"{_single_line(line)}\r\n" for line in lines) + "\r\n"
    return head.encode(TEXT_ENCODING, TEXT_ERRORS) + form


def _single_line(text: str) -> str:
    return text.replace("\r", "").replace("\n", "")


def head_length(data: bytes) -> int:
    """Length of the response head at the start of ``data`` (blank line included), or -1
    (where it ends: ``upstream.find_head_end``, the one rule)."""
    ends = find_head_end(data)
    return -1 if ends is None else ends[1]


def read_verdict(head: bytes, auth_header: str, timelimit_header: str) -> Verdict:
    """Read the auth server's response head (status line included) into a Verdict."""
    accepted, timelimit, message = False, None, None
    wanted, limit_prefix = auth_header.lower(), timelimit_header.lower()
    for line in _lines_with_ends(head):
        folded = line.lower()
        accepted = accepted or folded.startswith(wanted)
        if limit_prefix and folded.startswith(limit_prefix):
            seconds = _DIGITS.match(line, len(limit_prefix))
            timelimit = saturated_int(seconds.group(1)) if seconds else timelimit
        if folded.startswith(MESSAGE_HEADER):
            message = line[len(MESSAGE_HEADER):].split("\r")[0].split("\n")[0]
    return Verdict(accepted, timelimit, message)


def _lines_with_ends(head: bytes) -> list[str]:
    """The head's lines, each with its own line end, as latin-1 text (byte for byte)."""
    pieces = head.decode("latin-1").split("\n")
    return [piece + "\n" for piece in pieces[:-1]] + ([pieces[-1]] if pieces[-1] else [])


def render_manageauth(mount: str, users: Iterable[str], message: str | None) -> bytes:
    """/admin/manageauth's XML: the mount's users (names only, in byte order, as 2.4.4),
    then the outcome of the action, if one was asked for."""
    ordered = sorted(users, key=lambda user: user.encode(TEXT_ENCODING, TEXT_ERRORS))
    listed = "".join(f"<User><username>{escape(user)}</username></User>" for user in ordered)
    source = (f"<source mount={quoteattr(mount)}>{listed}</source>" if listed
              else f"<source mount={quoteattr(mount)}/>")
    answer = "" if message is None else (
        f"<iceresponse><message>{escape(message)}</message></iceresponse>")
    text = f"{XML_DECLARATION}<icestats>{source}{answer}</icestats>\n"
    return text.encode(TEXT_ENCODING, TEXT_ERRORS)
