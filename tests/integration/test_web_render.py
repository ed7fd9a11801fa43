"""fanout's pages as a real browser draws them, with no server: each page is rendered by
its pure renderer into a file and loaded over file:// in headless Chromium.

The status page's live updates are driven through a stand-in `EventSource` installed
before the page's own script runs: `__feed(text)` parses event-stream text as the HTML
standard says and dispatches its events, so the bytes `fanout.protocol.sse` renders are
what the page's script applies. Screenshots go to $FANOUT_TEST_ARTIFACTS when set, else
to a temporary directory; the path is printed (pytest -s shows it)."""
from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest

from fanout.protocol.admin_ui import SlaveRow, render_admin_mount, render_admin_overview
from fanout.protocol.sse import changes, opening, views
from fanout.protocol.stats import (
    MountFigures, MountSettings, RelayFigures, ServerFigures, global_stats, mount_stats,
    public_mount_stats,
)
from fanout.protocol.stats_xml import ListedClient
from fanout.protocol.status_page import render_status_page
from fanout.protocol.text import from_wire
from tests.support.chromium import Browser, chromium_binary
from tests.support.png import decode_png

pytestmark = pytest.mark.skipif(chromium_binary() is None, reason="needs chromium")

HOSTILE = "<b>Bold</b> & <img src=x onerror=alert(1)>"
LATIN1 = from_wire(b"/caf\xe9.mp3")
SERVER = global_stats(ServerFigures(admin="ops@radio.example", host="radio.example",
                                    location="Studio 4", server_id="Icecast 2.4.4 (fanout 0.1.0)",
                                    server_start=1_700_000_000.0, port=8000, clients=5,
                                    listeners=4, sources=3, connections=12,
                                    source_client_connections=3, listener_connections=9))

# The stand-in EventSource (see the module doc); installed before any page script runs.
FAKE_EVENT_SOURCE = r"""
(function () {
  var sources = [];
  function FakeEventSource(url) {
    this.url = url; this.readyState = 0; this.listeners = {};
    this.onopen = null; this.onerror = null; this.onmessage = null;
    sources.push(this);
  }
  FakeEventSource.prototype.addEventListener = function (type, fn) {
    (this.listeners[type] = this.listeners[type] || []).push(fn);
  };
  FakeEventSource.prototype.close = function () { this.readyState = 2; };
  FakeEventSource.prototype.dispatch = function (type, data) {
    var event = new MessageEvent(type, {data: data});
    (this.listeners[type] || []).forEach(function (fn) { fn.call(this, event); }, this);
    if (type === "message" && this.onmessage) { this.onmessage(event); }
  };
  window.EventSource = FakeEventSource;
  window.__eventSources = sources;
  window.__feed = function (text) {
    sources.forEach(function (s) {
      if (s.readyState === 0) { s.readyState = 1; if (s.onopen) { s.onopen(new Event("open")); } }
    });
    var type = "", data = [];
    text.split(/\r\n|\r|\n/).forEach(function (line) {
      if (line === "") {
        if (data.length) {
          sources.forEach(function (s) { s.dispatch(type || "message", data.join("\n")); });
        }
        type = ""; data = [];
        return;
      }
      if (line.charAt(0) === ":") { return; }
      var colon = line.indexOf(":");
      var name = colon < 0 ? line : line.slice(0, colon);
      var value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (name === "event") { type = value; } else if (name === "data") { data.push(value); }
    });
    return sources.length;
  };
}());
"""

ROWS_JS = """JSON.stringify([...document.querySelectorAll('#mounts tr.mount')].map(r => ({
  mount: r.dataset.mount, path: r.dataset.path,
  name: r.querySelector('.server_name').textContent,
  title: r.querySelector('.title').textContent,
  listeners: r.querySelector('.listeners').textContent,
  m3u: r.querySelector('a.m3u').getAttribute('href'),
  src: r.querySelector('audio').getAttribute('src'),
  markup: r.querySelectorAll('b, img, script').length,
  rect: r.getBoundingClientRect().toJSON()})))"""


def figures(name: str, title: str = "", listeners: int = 1, headers=(), relay=None) -> MountFigures:
    return MountFigures(name=name, content_type="audio/mpeg", headers=headers,
                        source_ip="192.0.2.10", user_agent="butt 0.1.40", title=title,
                        stream_start=1_700_000_600.0, listeners=listeners,
                        listener_peak=listeners + 2, slow_listeners=0, bytes_read=1,
                        bytes_sent=1, settings=MountSettings(), relay=relay)


def public(name: str, title: str = "", listeners: int = 1, headers=()) -> dict[str, str]:
    return public_mount_stats(mount_stats(figures(name, title, listeners, headers),
                                          "radio.example", 8000))


MORNING = [("ice-name", "Morning Show"), ("ice-description", "News and music"),
           ("ice-genre", "Talk"), ("ice-bitrate", "128"), ("ice-url", "https://radio.example/")]
MOUNTS = [public("/live.mp3", "Artist - First song", 12, MORNING),
          public("/jazz.mp3", "Miles Davis - So What", 3,
                 [("ice-name", HOSTILE), ("ice-genre", "Jazz"), ("ice-bitrate", "96")]),
          public(LATIN1, "caf\udce9 title", 0, [("ice-name", from_wire(b"Caf\xe9 FM"))])]


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    configured = os.environ.get("FANOUT_TEST_ARTIFACTS")
    path = Path(configured) if configured else tmp_path_factory.mktemp("web-artifacts")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots of fanout's pages: {path}")
    return path


@pytest.fixture(scope="module")
def browser():
    browser = Browser(width=1280, height=900)
    browser.call("Page.enable")
    browser.call("Page.addScriptToEvaluateOnNewDocument", {"source": FAKE_EVENT_SOURCE})
    yield browser
    browser.close()


def show(browser: Browser, page: bytes, path: Path) -> None:
    path.write_bytes(page)
    browser.open(path.as_uri())


def snapshot(browser: Browser, path: Path) -> bytes:
    """A PNG of the whole page (not scrolled: page and viewport coordinates agree)."""
    png = base64.b64decode(browser.call("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True})["data"])
    path.write_bytes(png)
    return png


def colours(png: bytes, top: float, bottom: float) -> int:
    """How many colours the screenshot has between two heights (CSS px = pixels here)."""
    _, _, rows = decode_png(png)
    return len({row[i:i + 3] for row in rows[int(top):int(bottom)]
                for i in range(0, len(row), 3)})


def rows(browser: Browser) -> list[dict]:
    return json.loads(browser.evaluate(ROWS_JS))


# --- the status page --------------------------------------------------------------------------

def test_status_page_draws_a_row_per_mount_with_source_text_as_text(browser, artifacts, tmp_path):
    show(browser, render_status_page("Icecast 2.4.4 (fanout 0.1.0)", MOUNTS, server=SERVER,
                                     version="0.1.0"), tmp_path / "status.html")
    drawn = rows(browser)
    assert [(r["mount"], r["path"]) for r in drawn] == [
        ("/live.mp3", "/live.mp3"), ("/jazz.mp3", "/jazz.mp3"), ("/café.mp3", "/caf%E9.mp3")]
    assert [r["name"] for r in drawn] == ["Morning Show", HOSTILE, "Café FM"]
    assert all(r["markup"] == 0 for r in drawn)
    assert [r["m3u"] for r in drawn] == ["/live.mp3.m3u", "/jazz.mp3.m3u", "/caf%E9.mp3.m3u"]
    assert browser.evaluate("document.querySelector('tr.empty').hidden") is True
    assert browser.evaluate("document.querySelector('footer').textContent").startswith(
        "fanout 0.1.0")
    png = snapshot(browser, artifacts / "status-page.png")
    for row in drawn:
        assert colours(png, row["rect"]["top"] + 2, row["rect"]["bottom"] - 2) > 8, row["mount"]
    below = max(r["rect"]["bottom"] for r in drawn)
    footer = browser.evaluate("document.querySelector('#live').getBoundingClientRect().top")
    assert colours(png, below + 2, footer - 2) == 1, "the check must tell ink from background"


def test_status_page_without_events_opens_no_stream(browser, tmp_path):
    show(browser, render_status_page("S", MOUNTS[:1]), tmp_path / "static.html")
    assert browser.evaluate("window.__eventSources.length") == 0


def test_now_playing_and_listeners_change_without_reload(browser, artifacts, tmp_path):
    show(browser, render_status_page("Icecast 2.4.4 (fanout 0.1.0)", MOUNTS, server=SERVER,
                                     version="0.1.0", events="/status-events"),
         tmp_path / "live.html")
    assert browser.evaluate("window.__eventSources.map(s => s.url)") == ["/status-events"]
    browser.evaluate("window.__loaded = performance.timeOrigin")
    before = views(MOUNTS)
    after = views([public("/live.mp3", "Artist - Second song", 15, MORNING), *MOUNTS[1:]])
    assert browser.evaluate(f"window.__feed({json.dumps(opening(before).decode())})") == 1
    assert browser.evaluate(f"window.__feed({json.dumps(changes(before, after).decode())})") == 1
    live = next(r for r in rows(browser) if r["mount"] == "/live.mp3")
    assert (live["title"], live["listeners"]) == ("Artist - Second song", "15")
    assert browser.evaluate("window.__loaded === performance.timeOrigin") is True  # no reload
    assert browser.evaluate("document.getElementById('live').className") == "on"
    snapshot(browser, artifacts / "status-page-live.png")


def test_a_new_mount_gets_a_row_and_a_mount_that_left_loses_it(browser, tmp_path):
    show(browser, render_status_page("S", MOUNTS[:2], events="/status-events"),
         tmp_path / "join.html")
    newcomer = public("/blues.mp3", "B.B. King - The Thrill Is Gone", 2,
                      [("ice-name", "Blues"), ("ice-url", "javascript:alert(1)")])
    linked = public("/classic.mp3", "", 1, [("ice-url", "https://classic.example/")])
    feed = changes(views(MOUNTS[:2]), views([MOUNTS[0], newcomer, linked]))
    browser.evaluate(f"window.__feed({json.dumps(feed.decode())})")
    drawn = rows(browser)
    assert [r["mount"] for r in drawn] == ["/blues.mp3", "/classic.mp3", "/live.mp3"]  # by path
    assert browser.evaluate("document.querySelector('tr[data-path=\"/classic.mp3\"] "
                            "a.server_name').getAttribute('href')") == "https://classic.example/"
    blues = drawn[0]
    assert (blues["name"], blues["title"], blues["src"], blues["m3u"]) == (
        "Blues", "B.B. King - The Thrill Is Gone", "/blues.mp3", "/blues.mp3.m3u")
    assert browser.evaluate(
        "document.querySelector('tr[data-path=\"/blues.mp3\"] a.server_name').hasAttribute('href')"
    ) is False
    feed = changes(views([MOUNTS[0], newcomer, linked]), {})
    browser.evaluate(f"window.__feed({json.dumps(feed.decode())})")
    assert rows(browser) == []
    assert browser.evaluate("document.querySelector('tr.empty').hidden") is False


def test_a_row_someone_is_playing_stays_greyed_when_its_mount_leaves(browser, tmp_path):
    show(browser, render_status_page("S", MOUNTS[:2], events="/status-events"),
         tmp_path / "playing.html")
    browser.evaluate("Object.defineProperty(document.querySelector("
                     "'tr[data-path=\"/live.mp3\"] audio'), 'paused', {get: () => false})")
    browser.evaluate(f"window.__feed({json.dumps(changes(views(MOUNTS[:2]), {}).decode())})")
    assert [r["mount"] for r in rows(browser)] == ["/live.mp3"]
    assert browser.evaluate("document.querySelector('tr.mount').className") == "mount gone"
    browser.evaluate(f"window.__feed({json.dumps(changes({}, views(MOUNTS[:1])).decode())})")
    assert browser.evaluate("document.querySelector('tr.mount').className") == "mount"


def test_hostile_text_in_an_event_stays_text(browser, tmp_path):
    show(browser, render_status_page("S", MOUNTS[:1], events="/status-events"),
         tmp_path / "hostile.html")
    feed = changes(views(MOUNTS[:1]), views([public("/live.mp3", HOSTILE, 1, MORNING)]))
    browser.evaluate(f"window.__feed({json.dumps(feed.decode())})")
    (row,) = rows(browser)
    assert row["title"] == HOSTILE and row["markup"] == 0
    assert browser.evaluate("document.querySelectorAll('img').length") == 0


# --- the admin UI -----------------------------------------------------------------------------

def test_admin_overview_draws_mounts_relays_and_slaves(browser, artifacts, tmp_path):
    mounts = [(name, mount_stats(f, "radio.example", 8000)) for name, f in (
        ("/live.mp3", figures("/live.mp3", "Artist - First song", 12, MORNING)),
        ("/jazz.mp3", figures("/jazz.mp3", HOSTILE, 3, [("ice-name", HOSTILE)])),
        ("/relay.mp3", figures("/relay.mp3", "", 4, relay=RelayFigures(
            "master.example:8000/relay.mp3", "streaming", 1, 987654))))]
    page = render_admin_overview(SERVER, mounts, {"/jazz.mp3"},
                                 [SlaveRow("edge1.example", 8001, 95.0, "0.42"),
                                  SlaveRow("edge2.example", 8000, None)], version="0.1.0")
    show(browser, page, tmp_path / "admin.html")
    drawn = json.loads(browser.evaluate("""JSON.stringify({
      mounts: [...document.querySelectorAll('#mounts tr.mount')].map(r => r.dataset.mount),
      kills: [...document.querySelectorAll('form.kill')].map(f => f.getAttribute('action')),
      markup: document.querySelectorAll('main b, main img, script').length,
      relays: document.querySelectorAll('#relays tr.relay').length,
      slaves: [...document.querySelectorAll('#slaves tr.slave td:first-child')]
        .map(t => t.textContent),
      titles: [...document.querySelectorAll('#mounts td.title')].map(t => t.textContent)})"""))
    assert drawn == {"mounts": ["/live.mp3", "/jazz.mp3", "/relay.mp3"],
                     "kills": [f"/admin/killsource.xsl?mount={m}" for m in
                               ("/live.mp3", "/jazz.mp3", "/relay.mp3")],
                     "markup": 0, "relays": 1, "slaves": ["edge1.example", "edge2.example"],
                     "titles": ["Artist - First song", HOSTILE, ""]}
    png = snapshot(browser, artifacts / "admin-overview.png")
    table = json.loads(browser.evaluate(
        "JSON.stringify(document.getElementById('mounts').getBoundingClientRect().toJSON())"))
    assert colours(png, table["top"], table["bottom"]) > 8


def test_admin_mount_page_draws_its_listeners(browser, artifacts, tmp_path):
    clients = [ListedClient("192.0.2.7", "VLC/3.0.18 LibVLC/3.0.18", 3725, 17),
               ListedClient("198.51.100.3", HOSTILE, 61, 18)]
    page = render_admin_mount("/live.mp3", mount_stats(figures("/live.mp3", "Song", 2, MORNING),
                                                       "radio.example", 8000),
                              clients, ["/live.mp3", "/jazz.mp3"], version="0.1.0")
    show(browser, page, tmp_path / "mount.html")
    listeners = json.loads(browser.evaluate("""JSON.stringify([...document.querySelectorAll(
      '#listeners tr.listener')].map(r => [r.dataset.id, r.cells[2].textContent,
      r.querySelector('form').getAttribute('action')]))"""))
    kick = "/admin/killclient.xsl?mount=/live.mp3&id="
    assert listeners == [["17", "VLC/3.0.18 LibVLC/3.0.18", kick + "17"],
                         ["18", HOSTILE, kick + "18"]]
    assert browser.evaluate("document.querySelectorAll('main img, main b').length") == 0
    snapshot(browser, artifacts / "admin-mount.png")
