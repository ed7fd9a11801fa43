"""An Ogg file played in a loop (fanout.model.oggloop): new links, granule pacing."""
from __future__ import annotations

import shutil
import struct

import pytest

from fanout.model.ogg import FLAG_BOS, FLAG_EOS, OggHeaderTracker, OggPageScanner, parse_page
from fanout.model.oggloop import MAX_PAGE_SECONDS, OPUS_RATE, OggLoop, granule_rate
from tests.support.splits import encode_tone
from tests.unit.test_ogg import ogg_page

SERIAL = 0x1234
RATE = 44100


def vorbis_id(rate: int) -> bytes:
    """A Vorbis identification packet (version 0, 1 channel, `rate`, no bitrates)."""
    return b"\x01vorbis" + struct.pack("<IBIiiiBB", 0, 1, rate, 0, 0, 0, 0xB8, 1)


def opus_head() -> bytes:
    return b"OpusHead" + struct.pack("<BBHIhB", 1, 1, 312, 44100, 0, 0)


def tiny_file(head: bytes, granules: list[int], serial: int = SERIAL) -> bytes:
    """A BOS page with `head`, a header page (granule 0), one data page per granule."""
    pages = [ogg_page(serial, 0, head, flags=FLAG_BOS), ogg_page(serial, 1, b"\x03tags")]
    for index, granule in enumerate(granules):
        last = index == len(granules) - 1
        pages.append(ogg_page(serial, 2 + index, b"audio%d" % index,
                              flags=FLAG_EOS if last else 0, granule=granule))
    return b"".join(pages)


def page_of(data: bytes):
    page = parse_page(data, 0)
    assert page is not None
    return page


def test_granule_rate_is_48k_for_opus_and_the_header_rate_for_vorbis() -> None:
    assert granule_rate(page_of(ogg_page(1, 0, opus_head(), flags=FLAG_BOS))) == OPUS_RATE
    assert granule_rate(page_of(ogg_page(1, 0, vorbis_id(22050), flags=FLAG_BOS))) == 22050


def test_granule_rate_is_none_for_other_codecs_non_bos_pages_and_zero_rates() -> None:
    assert granule_rate(page_of(ogg_page(1, 0, b"\x7fFLAC\x01\x00", flags=FLAG_BOS))) is None
    assert granule_rate(page_of(ogg_page(1, 0, vorbis_id(22050)))) is None  # not a BOS page
    assert granule_rate(page_of(ogg_page(1, 0, vorbis_id(0), flags=FLAG_BOS))) is None
    assert granule_rate(page_of(ogg_page(1, 0, b"\x01vorbis\0\0", flags=FLAG_BOS))) is None


def test_seconds_are_the_timed_streams_granules_at_its_rate() -> None:
    loop = OggLoop()
    data = tiny_file(vorbis_id(RATE), [RATE // 2, RATE, 3 * RATE // 2])
    loop.feed(data[:60])  # the header pages only: no audio yet
    assert loop.seconds == 0
    loop.feed(data[60:])
    assert loop.seconds == pytest.approx(1.5)


def test_a_partial_page_is_held_back_and_not_counted() -> None:
    loop = OggLoop()
    data = tiny_file(opus_head(), [OPUS_RATE])
    out = loop.feed(data[:-3])
    assert out == data[:data.rindex(b"OggS")]  # the data page is cut short: not written
    assert loop.seconds == 0
    loop.feed(data[-3:])
    assert loop.seconds == pytest.approx(1.0)


def test_each_pass_is_a_new_link_with_new_serials_and_granules_that_go_on() -> None:
    loop = OggLoop()
    data = tiny_file(vorbis_id(RATE), [RATE, 2 * RATE])
    out = [loop.feed(data)]
    loop.next_pass()
    out.append(loop.feed(data))
    loop.next_pass()
    out.append(loop.feed(data))
    assert loop.seconds == pytest.approx(6.0)
    pages = OggPageScanner().feed(b"".join(out))  # every CRC made anew: all pages verify
    assert len(pages) == 3 * 4
    assert [p.serial for p in pages] == [SERIAL] * 4 + [SERIAL + 1] * 4 + [SERIAL + 2] * 4
    assert [p.granule for p in pages] == [0, 0, RATE, 2 * RATE, 0, 0, 3 * RATE, 4 * RATE,
                                          0, 0, 5 * RATE, 6 * RATE]
    assert [p.data[27 + p.data[26]:] for p in pages[4:8]] == \
        [page.data[27 + page.data[26]:] for page in OggPageScanner().feed(data)]


def test_every_pass_hands_listeners_its_header_pages() -> None:
    loop, tracker, sets = OggLoop(), OggHeaderTracker(), []
    data = tiny_file(opus_head(), [OPUS_RATE])
    for _ in range(3):
        for page in OggPageScanner().feed(loop.feed(data)):
            role = tracker.observe(page)
            if role.header_set is not None:
                sets.append(role.header_set)
        loop.next_pass()
    assert len(sets) == 3 and all(s.count(b"OggS") == 2 and b"OpusHead" in s for s in sets)


def test_serials_wrap_at_32_bits() -> None:
    loop = OggLoop()
    data = tiny_file(opus_head(), [OPUS_RATE], serial=0xFFFFFFFF)
    loop.feed(data)
    loop.next_pass()
    assert {p.serial for p in OggPageScanner().feed(loop.feed(data))} == {0}


def test_a_granule_leap_or_a_step_back_counts_as_no_time() -> None:
    loop = OggLoop()
    leap = (MAX_PAGE_SECONDS + 1) * RATE
    # A file cut from a stream starts at a large granule: counted from there.
    loop.feed(tiny_file(vorbis_id(RATE), [10**9, 10**9 + RATE, 10**9, 10**9 + 2 * RATE,
                                          10**9 + 2 * RATE + leap, 10**9 + 3 * RATE + leap]))
    # +1 s, back (0), +2 s from there, the leap (0), +1 s.
    assert loop.seconds == pytest.approx(4.0)


def test_a_page_may_add_up_to_max_page_seconds() -> None:
    loop = OggLoop()
    loop.feed(tiny_file(opus_head(), [MAX_PAGE_SECONDS * OPUS_RATE]))
    assert loop.seconds == pytest.approx(MAX_PAGE_SECONDS)


def test_only_the_first_timed_stream_paces() -> None:
    loop = OggLoop()
    other = tiny_file(vorbis_id(8000), [80000], serial=99)  # its 10 s are not counted
    timed = tiny_file(opus_head(), [OPUS_RATE])
    loop.feed(timed[:timed.index(b"OggS", 4)] + other + timed[timed.index(b"OggS", 4):])
    assert loop.seconds == pytest.approx(1.0)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not installed")
@pytest.mark.parametrize("codec", ["libvorbis", "libopus"])
def test_a_real_files_seconds_are_its_length(codec: str) -> None:
    data = encode_tone("-c:a", codec, "-ar", "48000", "-f", "ogg", seconds=3)
    loop = OggLoop()
    for at in range(0, len(data), 1000):
        loop.feed(data[at:at + 1000])
    assert 2.99 <= loop.seconds <= 3.02  # Opus counts its pre-skip (6.5 ms) as audio
