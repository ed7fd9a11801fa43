"""The human status page, rendered by a real headless Chromium: the mount rows are drawn,
source text is shown as text (never markup), and a row's `<audio>` plays the stream."""
from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import pytest

from tests.support.admin import get
from tests.support.chromium import Browser, chromium_binary
from tests.support.clients import Source
from tests.support.png import decode_png
from tests.support.server import icecast_xml, start_fanout
from tests.support.waiting import wait_for

MOUNTS = "<mount><mount-name>/hidden</mount-name><hidden>1</hidden></mount>"
HOSTILE_NAME = "<b>Bold</b> & <img src=x onerror=alert(1)>"
ROWS_JS = """JSON.stringify([...document.querySelectorAll('tr.mount')].map(r => ({
  mount: r.dataset.mount, name: r.querySelector('.server_name').textContent,
  markup: r.querySelectorAll('b, img').length, rect: r.getBoundingClientRect().toJSON()})))"""
PLAY_JS = "document.querySelector('tr[data-mount=\"/page.mp3\"] audio').play().then(() => true)"
BUFFERED_JS = """(a => a.buffered.length > 0 && a.buffered.end(0) > 0)(
  document.querySelector('tr[data-mount="/page.mp3"] audio'))"""

pytestmark = pytest.mark.skipif(chromium_binary() is None or shutil.which("ffmpeg") is None,
                                reason="needs chromium and ffmpeg")


def sine_mp3(seconds: int = 8) -> bytes:
    return subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
         f"sine=frequency=440:duration={seconds}", "-c:a", "libmp3lame", "-b:a", "128k",
         "-f", "mp3", "-"], check=True, capture_output=True).stdout


class Feeder:
    """Keeps the page's sources streaming from a thread: the MP3 (looped) to the first, the
    pattern to the others, about 32 KB/s each."""

    PIECE = 3200
    PAUSE = 0.1

    def __init__(self, sources: list[Source], mp3: bytes) -> None:
        self.sources, self.mp3 = sources, mp3
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        sent = 0
        try:
            while not self.stopping.is_set():
                start = sent % len(self.mp3)
                self.sources[0].send(self.mp3[start:start + self.PIECE])
                sent += min(self.PIECE, len(self.mp3) - start)
                for source in self.sources[1:]:
                    source.send_pattern(self.PIECE)
                time.sleep(self.PAUSE)  # pacing a producer, not synchronisation
        except OSError:
            pass

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    server = start_fanout(icecast_xml(mounts=MOUNTS), tmp_path_factory.mktemp("page"), workers=2)
    sources = [Source(server.host, server.port, "/page.mp3", content_type="audio/mpeg",
                      headers={"ice-name": HOSTILE_NAME, "ice-genre": "test"}),
               Source(server.host, server.port, "/second"),
               Source(server.host, server.port, "/hidden")]
    # Every source keeps sending for the whole module: a source silent for the config's
    # source-timeout (3 s) is disconnected, and its mount (and the browser's listener) with it.
    feeder = Feeder(sources, sine_mp3())
    wait_for(lambda: len(json.loads(get(server, "/status-json.xsl").body)["icestats"]
                         .get("source", [])) == 2, 5, "both public mounts listed")
    browser = Browser(width=900, height=500)
    browser.open(f"{server.url}/")
    yield server, browser
    browser.close()
    feeder.close()
    for source in sources:
        source.close()
    assert server.stop() == 0, server.output()


def ink_rows(png: bytes, top: float, bottom: float) -> int:
    """How many pixel rows between `top` and `bottom` hold more than one colour."""
    _, _, rows = decode_png(png)
    return sum(1 for row in rows[int(top) + 2:int(bottom) - 2]
               if len({row[i:i + 3] for i in range(0, len(row), 3)}) > 1)


def test_status_page_shows_a_row_per_public_mount_as_text(page):
    server, browser = page
    rows = json.loads(browser.evaluate(ROWS_JS))
    assert sorted(r["mount"] for r in rows) == ["/page.mp3", "/second"]
    named = next(r for r in rows if r["mount"] == "/page.mp3")
    assert named["name"] == HOSTILE_NAME and named["markup"] == 0


def test_screenshot_draws_every_mount_row(page):
    server, browser = page
    rows = json.loads(browser.evaluate(ROWS_JS))
    png = browser.screenshot()
    for row in rows:
        assert ink_rows(png, row["rect"]["top"], row["rect"]["bottom"]) > 5, row["mount"]
    below = max(r["rect"]["bottom"] for r in rows) + 20
    assert ink_rows(png, below, below + 60) == 0, "the check must tell ink from background"


def test_audio_element_receives_the_stream(page):
    server, browser = page
    assert browser.evaluate(PLAY_JS) is True
    wait_for(lambda: browser.evaluate(BUFFERED_JS), 10, "audio buffered by the player")
    clients = get(server, "/admin/listclients?mount=/page.mp3").xml()
    assert any("Chrome" in c.findtext("UserAgent") for c in clients.iter("listener"))
