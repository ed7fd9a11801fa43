"""The Shoutcast v1 ("ICY", Shoutcast-DSP) source handshake, as Icecast 2.4.4 accepts it.

Theory of operation
-------------------
On a shoutcast-compat listen socket a source does not send an HTTP request. It sends

    <password> LF                 the whole first line (CR before the LF dropped)
                                  -> the server checks it and answers OK2_REPLY
    icy-name:My station LF        header lines, any number (libshout sends them at
    content-type:audio/mpeg LF    once with the password, Winamp's DSP waits for OK2)
    LF                            a blank line
    <audio>                       everything after it is the stream

2.4.4 turns the header lines into an ordinary source request by putting
``SOURCE <shoutcast mount> HTTP/1.0`` in front of them and parsing that; so do we, with
``HeadParser``, which gives the same line endings, size bounds and header syntax as
every other request, and a ``Request`` the source path takes as it is.

``HandshakeParser`` is sans-IO, in the style of h11: ``feed`` bytes in, ask
``next_event`` what is complete. Its states:

    PASSWORD --line--> HEADERS --blank line--> DONE     (.leftover: the first audio bytes)
    PASSWORD / HEADERS --bad or oversized input--> ERROR (ProtocolError, CLOSE_SILENTLY)

``next_event`` returns ``NEED_DATA`` until the next piece is whole, then a ``Password``,
then the ``Request``. Nothing can be answered on a compat port before OK2 (the peer is
not speaking HTTP) nor after it (it reads no more), so every error closes silently.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Callable, Final, NoReturn
from urllib.parse import quote

from fanout.protocol.errors import CLOSE_SILENTLY, ProtocolError
from fanout.protocol.http import TEXT_ENCODING, TEXT_ERRORS, HeadParser, Request

# What 2.4.4 sends a source whose password matched: no HTTP status line, ever.
OK2_REPLY: Final = b"OK2\r\nicy-caps:11\r\n\r\n"
# Longest password line we wait for. 2.4.4 reads the password and headers into one
# 4 KiB buffer; a password is a few dozen bytes, so anything longer is not a source.
MAX_PASSWORD_LINE = 1024


class NeedData:
    """``next_event`` needs more bytes before anything new is complete."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData()


@dataclass(frozen=True, slots=True)
class Password:
    """The first line: the password the source offers (decoded like request text)."""

    text: str

    def __repr__(self) -> str:  # keep passwords out of logs and tracebacks
        return "Password('***')"


Event = NeedData | Password | Request

PASSWORD, HEADERS, DONE, ERROR = "PASSWORD", "HEADERS", "DONE", "ERROR"


class HandshakeParser:
    """Incremental Shoutcast source handshake parser; see the module doc for its states.

    ``mount`` is the mount the source feeds: the header block is parsed as the head of
    ``SOURCE <mount, percent-encoded> HTTP/1.0``, so the Request's path is the mount.
    ``next_event`` raises ``ProtocolError`` (status ``CLOSE_SILENTLY``) for a password
    line over ``MAX_PASSWORD_LINE`` bytes or a header block the HTTP parser refuses (too
    large, too many lines, malformed lines, control characters).
    """

    def __init__(self, mount: str) -> None:
        self.state = PASSWORD
        self.leftover = b""  # every byte after the header block, once DONE
        self._buffer = b""
        self._head = HeadParser()
        target = quote(mount, safe="/", encoding=TEXT_ENCODING, errors=TEXT_ERRORS)
        self._head.feed(f"SOURCE {target} HTTP/1.0\r\n".encode("ascii"))
        self._handlers: dict[str, Callable[[], Event]] = {
            PASSWORD: self._next_password,
            HEADERS: self._next_headers,
            DONE: self._after_end,
            ERROR: self._after_end,
        }

    def feed(self, data: bytes) -> None:
        """Buffer ``data``; ``next_event`` tells what it completed. Once DONE, bytes fed
        are stream bytes: they join ``leftover``."""
        if self.state == DONE:
            self.leftover += data
        else:
            self._buffer += data

    def next_event(self) -> Event:
        """The next complete piece (``Password``, then ``Request``), else ``NEED_DATA``."""
        return self._handlers[self.state]()

    def _next_password(self) -> Event:
        line_end = self._buffer.find(b"\n", 0, MAX_PASSWORD_LINE + 1)
        if line_end < 0:
            if len(self._buffer) > MAX_PASSWORD_LINE:
                self._fail("password line too long")
            return NEED_DATA
        line, self._buffer = self._buffer[:line_end], self._buffer[line_end + 1:]
        self.state = HEADERS
        return Password(line.removesuffix(b"\r").decode(TEXT_ENCODING, TEXT_ERRORS))

    def _next_headers(self) -> Event:
        data, self._buffer = self._buffer, b""
        try:
            request = self._head.feed(data)
        except ProtocolError as exc:
            self._fail(exc.message)
        if request is None:
            return NEED_DATA
        self.state, self.leftover = DONE, self._head.leftover
        return request

    def _after_end(self) -> Event:
        raise RuntimeError(f"HandshakeParser.next_event() called in state {self.state}")

    def _fail(self, message: str) -> NoReturn:
        self.state = ERROR
        raise ProtocolError(f"Shoutcast source: {message}", CLOSE_SILENTLY)


def password_matches(given: Password, expected: str | None) -> bool:
    """Whether the offered password is exactly ``expected``, compared in constant time.

    False when no password is configured (None): 2.4.4 then refuses every source.
    """
    if expected is None:
        return False
    return hmac.compare_digest(given.text.encode(TEXT_ENCODING, TEXT_ERRORS),
                               expected.encode(TEXT_ENCODING, TEXT_ERRORS))
