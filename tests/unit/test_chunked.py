"""Chunked request bodies (fanout.protocol.chunked): every body is fed whole, byte by byte
and in seeded random splits, and every way must give the same payload or the same error."""
from __future__ import annotations

import random
from typing import Callable

import pytest

from fanout.protocol.chunked import (
    MAX_LINE, MAX_TRAILER_BYTES, ChunkedDecoder, body_decoder,
)
from fanout.protocol.errors import ProtocolError
from tests.support.splits import random_pieces

SEEDS = (1, 2, 3, 4, 5)


def whole(body: bytes, seed: int) -> list[bytes]:
    return [body]


def byte_by_byte(body: bytes, seed: int) -> list[bytes]:
    return [body[i:i + 1] for i in range(len(body))]


def random_splits(body: bytes, seed: int) -> list[bytes]:
    return random_pieces(body, random.Random(seed), max_piece=7)


SPLITS: list[Callable[[bytes, int], list[bytes]]] = [whole, byte_by_byte, random_splits]


def decode(pieces: list[bytes]) -> tuple[bytes, ChunkedDecoder]:
    decoder = ChunkedDecoder()
    return b"".join(decoder.feed(piece) for piece in pieces), decoder


def chunked(payload: bytes, sizes: list[int], *, end: bytes = b"0\r\n\r\n") -> bytes:
    """`payload` framed as chunks of the given sizes (the last one takes the rest)."""
    out, pos = [], 0
    for size in [*sizes, len(payload)]:
        piece = payload[pos:pos + size]
        pos += len(piece)
        if piece:
            out.append(b"%x\r\n%s\r\n" % (len(piece), piece))
    return b"".join(out) + end


# What curl -T - sent for `echo hello` (captured), and other well-formed bodies.
GOOD = {
    "curl": (b"6\r\nhello\n\r\n0\r\n\r\n", b"hello\n"),
    "upper-case hex and extensions": (b"A;name=value\r\n0123456789\r\n0;last\r\n\r\n",
                                      b"0123456789"),
    "bare LF line ends": (b"3\nabc\n0\n\n", b"abc"),
    "trailer lines": (b"2\r\nhi\r\n0\r\nX-Checksum: 1\r\nX-Other: 2\r\n\r\n", b"hi"),
    "leading zeros": (b"0004\r\nwxyz\r\n0\r\n\r\n", b"wxyz"),
    "binary payload with CR LF inside": (chunked(bytes(range(256)) * 4, [13, 1, 500]),
                                         bytes(range(256)) * 4),
}


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("name", sorted(GOOD))
def test_well_formed_bodies_decode_to_their_payload_whatever_the_split(name, seed, split):
    body, payload = GOOD[name]
    decoded, decoder = decode(split(body, seed))
    assert decoded == payload
    assert decoder.done


@pytest.mark.parametrize("seed", SEEDS)
def test_a_long_stream_of_random_chunks_decodes_byte_exact(seed):
    rng = random.Random(seed)
    payload = rng.randbytes(200_000)
    sizes = [rng.randint(1, 20_000) for _ in range(30)]
    decoded, decoder = decode(random_pieces(chunked(payload, sizes), rng, max_piece=5000))
    assert decoded == payload and decoder.done


def test_an_unfinished_body_is_not_done_and_gives_what_arrived():
    decoder = ChunkedDecoder()
    assert decoder.feed(b"10\r\n01234") == b"01234"
    assert not decoder.done
    assert decoder.feed(b"56789abcdef\r\n") == b"56789abcdef"
    assert not decoder.done


def test_bytes_after_the_last_chunk_are_not_payload():
    decoder = ChunkedDecoder()
    assert decoder.feed(b"1\r\nx\r\n0\r\n\r\nGARBAGE") == b"x"
    assert decoder.done
    assert decoder.feed(b"more") == b""


BAD = {
    "not hex": (b"zz\r\n", "bad chunk size line b'zz'"),
    "empty size line": (b"\r\n", "bad chunk size line b''"),
    "a size over 16 hex digits": (b"1" * 17 + b"\r\n", "bad chunk size line"),
    "a negative size": (b"-1\r\n", "bad chunk size line b'-1'"),
    "data longer than its size": (b"2\r\nabc\r\n", "chunk data longer than its size"),
    "a size line that never ends": (b"1" * (MAX_LINE + 1), f"chunked framing line over {MAX_LINE} bytes"),
    "endless trailer": (b"0\r\n" + b"X-A: b\r\n" * (MAX_TRAILER_BYTES // 4),
                        f"chunked trailer over {MAX_TRAILER_BYTES} bytes"),
    "raw audio sent as if chunked": (b"\xff\xfb\x90\x64\x00" * 10 + b"\n", "bad chunk size line"),
}


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_framing_is_a_400_whatever_the_split(name, split):
    body, message = BAD[name]
    decoder = ChunkedDecoder()
    with pytest.raises(ProtocolError) as raised:
        for piece in split(body, 1):
            decoder.feed(piece)
    assert raised.value.status == 400
    assert raised.value.message.startswith(message)
    with pytest.raises(RuntimeError):
        decoder.feed(b"1\r\n")


def test_no_line_is_buffered_beyond_the_limit():
    decoder = ChunkedDecoder()
    decoder.feed(b"1" * MAX_LINE)  # at the limit: still a line in the making
    with pytest.raises(ProtocolError):
        decoder.feed(b"1")


@pytest.mark.parametrize("values", [[], [""], [" , "]])
def test_no_transfer_encoding_needs_no_decoder(values):
    assert body_decoder(values) is None


@pytest.mark.parametrize("values", [["chunked"], ["Chunked"], [" chunked "], ["", "chunked"]])
def test_chunked_gets_a_decoder(values):
    assert isinstance(body_decoder(values), ChunkedDecoder)


@pytest.mark.parametrize("values,named", [
    (["gzip"], "gzip"), (["gzip, chunked"], "gzip, chunked"), (["chunked", "chunked"], "chunked, chunked"),
    (["identity"], "identity"),
])
def test_other_codings_are_refused_with_400(values, named):
    with pytest.raises(ProtocolError) as raised:
        body_decoder(values)
    assert (raised.value.message, raised.value.status) == (f"Transfer-Encoding {named} not supported", 400)
