"""`Transfer-Encoding: chunked` request bodies (RFC 9112 §7.1), decoded as they arrive.

Why: ffmpeg's `http://` output with `-method PUT` and `curl -T -` stream a source's audio
chunked. Icecast 2.4.4 does not decode it and relays the framing to listeners inside the
audio (PROTOCOL.md §3.5 says the same of relays); Icecast 2.5 decodes it, and so do we.

Theory of operation
-------------------
A chunked body is a sequence of chunks, each `<hex size>[;extensions]CRLF <size bytes>
CRLF`, ended by a zero-size chunk, optional trailer lines and an empty line.
``ChunkedDecoder.feed(data)`` returns the payload bytes found in ``data`` (possibly
none) and keeps whatever it needs of a line cut by the split. Its states, and what
``feed`` does in each (the ``_STEPS`` table):

    SIZE      read a chunk-size line          -> DATA, or TRAILER after a size of 0
    DATA      pass ``remaining`` payload bytes -> DATA_END when they are through
    DATA_END  expect the line end after them  -> SIZE
    TRAILER   skip trailer lines               -> DONE at the empty line
    DONE      the body is complete; later bytes are not part of it and are ignored
    ERROR     feed raised ProtocolError(…, 400); feeding again is a RuntimeError

Lines end at LF and any CRs before it are dropped, as in ``http.HeadParser``. Every
buffered line is bounded, so no input makes the decoder hold more than MAX_LINE bytes.
"""
from __future__ import annotations

import re
from typing import Callable

from fanout.protocol.errors import ProtocolError

# A chunk-size line is 1-16 hex digits plus optional extensions, which no streaming client
# sends; a longer line is garbage, not a size.
MAX_LINE = 1024
# Trailer bytes accepted after the last chunk (a source has no use for trailers; bounded
# like a request head).
MAX_TRAILER_BYTES = 8192

SIZE, DATA, DATA_END, TRAILER, DONE, ERROR = "SIZE", "DATA", "DATA_END", "TRAILER", "DONE", "ERROR"

_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,16})[ \t]*(?:;[^\x00-\x08\x0a-\x1f\x7f]*)?")


class ChunkedDecoder:
    """Incremental decoder of one chunked body; see the module doc for its states."""

    def __init__(self) -> None:
        self.state = SIZE
        self.remaining = 0  # payload bytes still due in the current chunk
        self._line = bytearray()  # a line cut by the end of the last feed
        self._trailer_bytes = 0

    @property
    def done(self) -> bool:
        """True once the last chunk and the trailer were read: the body is complete."""
        return self.state == DONE

    def feed(self, data: bytes) -> bytes:
        """The payload bytes in `data`. Raises ProtocolError (400) for bad chunk framing."""
        if self.state == ERROR:
            raise RuntimeError("feed after a framing error")
        out: list[bytes] = []
        pos = 0
        try:
            while pos < len(data) and self.state != DONE:
                pos = _STEPS[self.state](self, data, pos, out)
        except ProtocolError:
            self.state = ERROR
            raise
        return b"".join(out)

    # -- one step per state: consume from data[pos:], return the new position ---------------

    def _size(self, data: bytes, pos: int, out: list[bytes]) -> int:
        line, pos = self._take_line(data, pos)
        if line is None:
            return pos
        match = _SIZE_LINE.fullmatch(line)
        if match is None:
            raise ProtocolError(f"bad chunk size line {bytes(line[:32])!r}", 400)
        self.remaining = int(match.group(1), 16)
        self.state = DATA if self.remaining else TRAILER
        return pos

    def _data(self, data: bytes, pos: int, out: list[bytes]) -> int:
        end = min(len(data), pos + self.remaining)
        out.append(data[pos:end])
        self.remaining -= end - pos
        if self.remaining == 0:
            self.state = DATA_END
        return end

    def _data_end(self, data: bytes, pos: int, out: list[bytes]) -> int:
        byte = data[pos]
        if byte == 0x0A:
            self.state = SIZE
        elif byte != 0x0D:
            raise ProtocolError("chunk data longer than its size", 400)
        return pos + 1

    def _trailer(self, data: bytes, pos: int, out: list[bytes]) -> int:
        line, pos = self._take_line(data, pos)
        if line is None:
            return pos
        if not line:
            self.state = DONE
            return pos
        self._trailer_bytes += len(line) + 1
        if self._trailer_bytes > MAX_TRAILER_BYTES:
            raise ProtocolError(f"chunked trailer over {MAX_TRAILER_BYTES} bytes", 400)
        return pos

    def _take_line(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """(the next whole line without its end, position after it), or (None, end of
        data) with the partial line kept. Raises ProtocolError for a line over MAX_LINE."""
        newline = data.find(b"\n", pos)
        end = len(data) if newline < 0 else newline
        if len(self._line) + end - pos > MAX_LINE:
            raise ProtocolError(f"chunked framing line over {MAX_LINE} bytes", 400)
        self._line += data[pos:end]
        if newline < 0:
            return None, end
        line = bytes(self._line).rstrip(b"\r")
        self._line.clear()
        return line, newline + 1


_STEPS: dict[str, Callable[[ChunkedDecoder, bytes, int, list[bytes]], int]] = {
    SIZE: ChunkedDecoder._size,
    DATA: ChunkedDecoder._data,
    DATA_END: ChunkedDecoder._data_end,
    TRAILER: ChunkedDecoder._trailer,
}


def body_decoder(transfer_encodings: list[str]) -> ChunkedDecoder | None:
    """The decoder a source body needs given its Transfer-Encoding header values: None
    without one, a ChunkedDecoder for `chunked`. Raises ProtocolError (400) for any other
    coding (gzip, …): no streaming client sends one, and passing it on would corrupt."""
    codings = [c.strip().lower() for value in transfer_encodings for c in value.split(",")]
    codings = [c for c in codings if c]
    if not codings:
        return None
    if codings == ["chunked"]:
        return ChunkedDecoder()
    raise ProtocolError(f"Transfer-Encoding {', '.join(codings)} not supported", 400)
