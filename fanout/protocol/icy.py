"""ICY (Shoutcast) inline metadata: building, parsing and stripping blocks.

Theory of operation. A listener that sent ``Icy-MetaData: 1`` receives exactly
``metaint`` audio bytes, then one metadata block, then ``metaint`` audio bytes, and
so on, counting from the first body byte after the response head. A block is one
length byte ``L`` followed by ``16 * L`` bytes of text padded with NUL; ``L == 0``
means "unchanged". The text is ``StreamTitle='...';`` optionally followed by
``StreamUrl='...';``, with no escaping at all (Icecast 2.4.4 behaviour, PROTOCOL.md
§5.3), so readers find values by looking for the ``';`` terminator.

``IcyStripper`` runs the same layout backwards on an upstream body: it is a
three-state machine (audio, length byte, payload) driven by byte counts only, so any
split of the input across ``feed`` calls gives the same result.
"""

from __future__ import annotations

import enum

# 4079 bytes: 255 units of 16, less the NUL that must end the text. A longer local update
# is refused whole (never truncated: a cut title could end inside a UTF-8 character or
# lose its "';"), as Icecast 2.4.4's mp3_set_title refuses it ("Metadata too long").
MAX_META_TEXT = 255 * 16 - 1
DEFAULT_METAINT = 16000  # Icecast's default listener interval (1 s at 128 kbit/s)

_BLOCK_UNIT = 16  # the length byte counts 16-byte units
_TERMINATOR = b"';"


def stream_title_text(
    song: bytes | None = None,
    artist: bytes | None = None,
    title: bytes | None = None,
    url: bytes | None = None,
) -> bytes:
    """Return the metadata text for a local title update (not yet padded).

    The title is ``shown_title``'s. The values are inserted raw, control characters
    included: Icecast 2.4.4 does not escape apostrophes either.
    """
    text = b"StreamTitle='" + shown_title(song, artist, title) + b"';"
    if url:
        text += b"StreamUrl='" + url + b"';"
    return text


def shown_title(song: bytes | None = None, artist: bytes | None = None,
                title: bytes | None = None) -> bytes:
    """The title of a local update: ``song`` if given, else ``artist - title`` (or
    ``title`` alone)."""
    if song is not None:
        return song
    if artist and title is not None:
        return artist + b" - " + title
    return title or b""


def encode_block(text: bytes) -> bytes:
    """Return the wire block for ``text``: length byte + text NUL-padded to 16·L.

    ``L = len(text) // 16 + 1``, so there is always at least one NUL (a 16-byte text
    takes 32 bytes, as in Icecast). Raises ValueError if the text exceeds
    ``MAX_META_TEXT`` bytes.
    """
    if len(text) > MAX_META_TEXT:
        raise ValueError(f"ICY metadata text is {len(text)} bytes, max {MAX_META_TEXT}")
    units = len(text) // _BLOCK_UNIT + 1
    return bytes((units,)) + text.ljust(units * _BLOCK_UNIT, b"\0")


def block_from_payload(payload: bytes) -> bytes:
    """Return the block for a payload received from upstream (``IcyStripper``).

    Upstream blocks are re-served byte-identical, so only the length byte is added.
    Raises ValueError if the payload is not a whole number (1..255) of 16-byte units.
    """
    units, rest = divmod(len(payload), _BLOCK_UNIT)
    if rest or not 0 < units <= 255:
        raise ValueError(f"ICY payload of {len(payload)} bytes is not 16·L, 0 < L < 256")
    return bytes((units,)) + payload


EMPTY_BLOCK: bytes = encode_block(b"StreamTitle='';")


def parse_block_text(block_payload: bytes) -> dict[str, bytes]:
    """Return the ``key='value';`` pairs of a block payload (padding ignored).

    A value ends at the first ``';`` after its opening quote, so apostrophes inside a
    title survive; a final value without ``';`` (truncated block) ends at the end of
    the text, minus a closing quote. Unknown keys are kept; later duplicates win.
    """
    text = block_payload.split(b"\0", 1)[0]
    fields: dict[str, bytes] = {}
    pos = 0
    while True:
        eq = text.find(b"='", pos)
        if eq < 0:
            return fields
        key = text[pos:eq].strip(b" ;\t\r\n").decode("latin-1")
        end = text.find(_TERMINATOR, eq + 2)
        if end < 0:
            value = text[eq + 2 :]
            fields[key] = value[:-1] if value.endswith(b"'") else value
            return fields
        fields[key] = text[eq + 2 : end]
        pos = end + len(_TERMINATOR)


class _Expect(enum.Enum):
    AUDIO = enum.auto()
    LENGTH = enum.auto()
    PAYLOAD = enum.auto()


class IcyStripper:
    """Sans-IO removal of inline ICY metadata from an upstream body.

    ``metaint`` counts from the first body byte after the response head (callers must
    feed body bytes that arrived together with the head). ``feed(data)`` returns
    ``(audio, blocks)``: the audio bytes with metadata removed, and the raw payloads
    (no length byte, padding kept) of every non-empty block completed in this feed,
    in order. ``metaint == 0`` means no metadata: pass-through.
    """

    def __init__(self, metaint: int) -> None:
        if metaint < 0:
            raise ValueError(f"icy-metaint must be >= 0, got {metaint}")
        self._metaint = metaint
        self._state = _Expect.AUDIO
        self._left = metaint  # bytes left in the current audio run or payload
        self._payload = bytearray()

    def feed(self, data: bytes) -> tuple[bytes, list[bytes]]:
        """Consume ``data``; return the audio it contained and completed blocks."""
        if not self._metaint:
            return bytes(data), []
        audio: list[bytes] = []
        blocks: list[bytes] = []
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            if self._state is _Expect.AUDIO:
                pos = self._take_audio(view, pos, audio)
            elif self._state is _Expect.LENGTH:
                self._take_length(view[pos])
                pos += 1
            else:
                pos = self._take_payload(view, pos, blocks)
        return b"".join(audio), blocks

    def _take_audio(self, view: memoryview, pos: int, audio: list[bytes]) -> int:
        end = min(len(view), pos + self._left)
        audio.append(bytes(view[pos:end]))
        self._left -= end - pos
        if not self._left:
            self._state = _Expect.LENGTH
        return end

    def _take_length(self, units: int) -> None:
        if units:
            self._state, self._left = _Expect.PAYLOAD, units * _BLOCK_UNIT
        else:  # "\0": metadata unchanged, straight back to audio
            self._state, self._left = _Expect.AUDIO, self._metaint

    def _take_payload(self, view: memoryview, pos: int, blocks: list[bytes]) -> int:
        end = min(len(view), pos + self._left)
        self._payload += view[pos:end]
        self._left -= end - pos
        if not self._left:
            blocks.append(bytes(self._payload))
            self._payload.clear()
            self._state, self._left = _Expect.AUDIO, self._metaint
        return end
