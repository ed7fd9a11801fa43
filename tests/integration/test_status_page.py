"""The human status page and the admin UI of a real fanout, in a real headless Chromium:
the mount rows are drawn, source text is shown as text (never markup), a row's `<audio>`
plays the stream, the now-playing line follows a title change without a reload, and the
admin UI's forms work from the browser.

Screenshots go to $FANOUT_TEST_ARTIFACTS when set, else to a temporary directory; the
path is printed (pytest -s shows it)."""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.support.admin import ADMIN, get
from tests.support.chromium import Browser, chromium_binary
from tests.support.clients import Listener, Source
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


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    configured = os.environ.get("FANOUT_TEST_ARTIFACTS")
    path = Path(configured) if configured else tmp_path_factory.mktemp("server-pages")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of a running fanout's pages: {path}")
    return path


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


def test_screenshot_draws_every_mount_row(page, artifacts):
    server, browser = page
    rows = json.loads(browser.evaluate(ROWS_JS))
    png = browser.screenshot()
    (artifacts / "server-status-page.png").write_bytes(png)
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


NOW_PLAYING_JS = "document.querySelector('tr[data-mount=\"/page.mp3\"] td.title').textContent"


def test_now_playing_changes_without_reload_when_the_title_changes(page, artifacts):
    server, browser = page
    browser.evaluate("window.__sameDocument = true")  # a reload would forget it
    assert get(server, "/admin/metadata?mount=/page.mp3&mode=updinfo&song=Live%20%26%20now"
               ).status == 200
    wait_for(lambda: browser.evaluate(NOW_PLAYING_JS) == "Live & now", 10,
             "the new title on the page")
    assert browser.evaluate("window.__sameDocument") is True
    assert browser.evaluate("document.getElementById('live').className") == "on"
    (artifacts / "server-status-page-live.png").write_bytes(browser.screenshot())


def snapshot(browser: Browser, path: Path) -> bytes:
    """A PNG of the whole page, kept at `path`."""
    png = base64.b64decode(browser.call("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True})["data"])
    path.write_bytes(png)
    return png


def result_text(browser: Browser) -> str:
    return browser.evaluate("document.querySelector('p.result').textContent")


def test_the_admin_ui_sets_a_title_and_kicks_a_listener_from_the_browser(page, artifacts):
    server, browser = page
    browser.send_with_every_request({"Authorization": ADMIN})
    browser.open(f"{server.url}/admin/")
    mounts = browser.evaluate("[...document.querySelectorAll('#mounts tr.mount')]"
                              ".map(r => r.dataset.mount)")
    assert sorted(mounts) == ["/hidden", "/page.mp3", "/second"]
    png = snapshot(browser, artifacts / "server-admin-overview.png")
    table = json.loads(browser.evaluate(
        "JSON.stringify(document.getElementById('mounts').getBoundingClientRect().toJSON())"))
    assert ink_rows(png, table["top"], table["bottom"]) > 20
    browser.navigate_by(lambda: browser.evaluate(
        "(form => { form.querySelector('input[name=song]').value = 'Typed in the form';"
        " form.submit(); return true; })(document.querySelector("
        "'tr[data-mount=\"/page.mp3\"] form.metadata'))"))
    assert result_text(browser) == "Metadata update successful"
    wait_for(lambda: get(server, "/admin/stats?mount=/page.mp3").xml().findtext("source/title")
             == "Typed in the form", 5, "the title typed in the form")
    listener = Listener(server.host, server.port, "/second").start()
    browser.open(f"{server.url}/admin/listclients.xsl?mount=/second")
    kick = browser.evaluate("document.querySelector('#listeners tr.listener form')"
                            ".getAttribute('action')")
    snapshot(browser, artifacts / "server-admin-mount.png")
    browser.navigate_by(lambda: browser.evaluate(
        "document.querySelector('#listeners tr.listener button').click() || true"))
    client_id = kick.rsplit("=", 1)[1]
    assert result_text(browser) == f"Client {client_id} removed"
    assert listener.closed.wait(5)
