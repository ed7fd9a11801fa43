"""The pure renderers of stats, status and metrics (fanout.protocol), read like §6.3–6.5."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fanout.protocol.prometheus import MetricFamily, render_metrics
from fanout.protocol.stats import (
    MountFigures, MountSettings, ServerFigures, global_stats, mount_stats, public_mount_stats,
)
from fanout.protocol.stats_xml import (
    ListedClient, ListedMount, render_iceresponse, render_listclients, render_listmounts,
    render_stats,
)
from fanout.protocol.status_json import json_value, render_health, render_status_json
from fanout.protocol.status_page import render_status_page
from fanout.protocol.text import from_wire

HOSTILE = '<script>alert("x")</script> & \'co\''


def figures(name: str = "/live", headers=(), title: str = "", **settings) -> MountFigures:
    return MountFigures(name=name, content_type="audio/mpeg", headers=headers,
                        source_ip="10.0.0.1", user_agent="enc/1", title=title,
                        stream_start=1_700_000_000.0, listeners=3, listener_peak=5,
                        slow_listeners=1, bytes_read=1000, bytes_sent=5000,
                        settings=MountSettings(**settings))


SERVER = ServerFigures(admin="a@b", host="radio.example", location="Earth",
                       server_id="Icecast 2.4.4", server_start=1_700_000_000.0, port=8000,
                       clients=4, listeners=3, sources=1, connections=9,
                       source_connections=1, listener_connections=3)


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("0", 0), ("-2", -2), ("1.5", 1.5), ("007", "007"), ("true", True),
    ("false", False), ("128k", "128k"), ("", ""),
])
def test_json_typing_follows_icecasts_stylesheet(text, value):
    assert json_value(text) == value and type(json_value(text)) is type(value)


def test_unspecified_name_description_and_genre_as_icecast():
    stats = mount_stats(figures(), "h", 8000)
    assert stats["server_name"] == "Unspecified name"
    assert stats["server_description"] == "Unspecified description"
    assert stats["genre"] == "various"
    assert "title" not in stats and "server_url" not in stats


def test_audio_info_pairs_become_their_own_stats():
    stats = mount_stats(figures(headers=[("ice-audio-info", "ice-samplerate=44100;channels=2")]),
                        "h", 8000)
    assert stats["ice-samplerate"] == "44100" and stats["channels"] == "2"


def test_mount_settings_override_source_headers():
    stats = mount_stats(figures(headers=[("ice-name", "from source")], stream_name="configured"),
                        "h", 8000)
    assert stats["server_name"] == "configured"


def test_mount_stats_are_sorted_and_listenurl_uses_hostname_and_port():
    stats = mount_stats(figures(), "radio.example", 8123)
    assert list(stats) == sorted(stats)
    assert stats["listenurl"] == "http://radio.example:8123/live"
    assert stats["max_listeners"] == "unlimited"


def test_public_stats_drop_private_and_connection_keys():
    public = public_mount_stats({**mount_stats(figures(), "h", 1), "listener_connections": "2"})
    for key in ("source_ip", "user_agent", "total_bytes_sent", "total_bytes_read",
                "slow_listeners", "max_listeners", "public", "listener_connections"):
        assert key not in public


def test_status_json_source_is_object_for_one_array_for_many_absent_for_none():
    glob = global_stats(SERVER)
    one = public_mount_stats(mount_stats(figures(), "h", 1))
    assert isinstance(json.loads(render_status_json(glob, [one]))["icestats"]["source"], dict)
    assert len(json.loads(render_status_json(glob, [one, one]))["icestats"]["source"]) == 2
    assert "source" not in json.loads(render_status_json(glob, []))["icestats"]


def test_status_json_global_keys_are_icecasts_public_ones():
    icestats = json.loads(render_status_json(global_stats(SERVER), []))["icestats"]
    assert list(icestats) == ["admin", "host", "location", "server_id", "server_start",
                              "server_start_iso8601", "dummy"]


def test_status_json_sources_end_with_dummy_null():
    source = json.loads(render_status_json(global_stats(SERVER),
                                           [{"listeners": "1"}]))["icestats"]["source"]
    assert list(source.items())[-1] == ("dummy", None)


def test_global_stats_are_in_icecasts_order():
    assert list(global_stats(SERVER)) == sorted(global_stats(SERVER))


def test_stats_xml_escapes_source_text():
    body = render_stats(global_stats(SERVER), [("/a&b", {"title": HOSTILE})])
    assert body.startswith(b'<?xml version="1.0"?>\n<icestats>') and body.endswith(b"\n")
    source = ET.fromstring(body).find("source")
    assert source.get("mount") == "/a&b" and source.findtext("title") == HOSTILE


def test_listmounts_children_in_icecasts_order():
    body = render_listmounts([ListedMount("/m", 2, 30, "audio/mpeg")])
    assert [e.tag for e in ET.fromstring(body).find("source")] == [
        "fallback", "listeners", "Connected", "content-type"]


def test_listclients_says_unknown_for_a_missing_user_agent():
    body = render_listclients("/m", [ListedClient("1.2.3.4", "", 5, 64)])
    source = ET.fromstring(body).find("source")
    assert source.findtext("Listeners") == "1"
    assert source.find("listener").findtext("UserAgent") == "Unknown"


def test_iceresponse_layout():
    assert render_iceresponse("Source Removed", True) == (
        b'<?xml version="1.0"?>\n<iceresponse><message>Source Removed</message>'
        b"<return>1</return></iceresponse>\n")


def test_metrics_parse_with_prometheus_client_and_escape_labels():
    family = MetricFamily("fanout_mount_listeners", "gauge", "Listeners").add(3, mount='/a"\\\n')
    counter = MetricFamily("fanout_connections_accepted_total", "counter", "Accepted").add(7)
    parsed = {f.name: f for f in text_string_to_metric_families(
        render_metrics([family, counter]).decode())}
    # Quote and backslash escaped; a control character is shown as U+FFFD (text.display).
    assert parsed["fanout_mount_listeners"].samples[0].labels == {"mount": '/a"\\\ufffd'}
    assert parsed["fanout_connections_accepted"].type == "counter"
    assert parsed["fanout_connections_accepted"].samples[0].value == 7


def test_health_says_shutting_down_when_not_serving():
    assert json.loads(render_health(False, 0, 1.0))["status"] == "shutting_down"
    assert json.loads(render_health(True, 2, 1.0))["status"] == "ok"


def test_status_page_escapes_every_source_value():
    stats = public_mount_stats(mount_stats(
        figures(name="/x<y", headers=[("ice-name", HOSTILE), ("ice-genre", HOSTILE)],
                title=HOSTILE), "h", 1))
    page = render_status_page("Icecast 2.4.4", [stats]).decode()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert 'data-mount="/x&lt;y"' in page and 'src="/x%3Cy"' in page


def test_status_page_has_a_row_and_a_player_per_mount():
    mounts = [public_mount_stats(mount_stats(figures(name=n), "h", 1)) for n in ("/a", "/b")]
    page = render_status_page("Icecast 2.4.4", mounts).decode()
    assert page.count('<tr class="mount"') == 2
    assert page.count('<audio controls preload="none"') == 2


# --- any bytes render validly (text.display) ---------------------------------------------

BAD_MOUNT = from_wire(b"/\xff\xfd.mp3")
LATIN1_NAME = from_wire(b"caf\xe9")  # Ice-Name from an older encoder


def non_utf8_stats() -> dict[str, str]:
    return mount_stats(figures(name=BAD_MOUNT, headers=[("ice-name", LATIN1_NAME),
                                                        ("ice-genre", "a\r\nb\x01")],
                               title="x\x00y"), "h", 8000)


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.cells: dict[str, str] = {}
        self.links: list[str] = []
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "td":
            self._cell = values.get("class")
        if tag == "a":
            self.links.append(values["href"] or "")

    def handle_data(self, data: str) -> None:
        if self._cell:
            self.cells[self._cell] = self.cells.get(self._cell, "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None


def test_listenurl_is_a_url_that_requests_the_mounts_exact_bytes():
    assert non_utf8_stats()["listenurl"] == "http://h:8000/%FF%FD.mp3"


def test_stats_xml_of_non_utf8_text_is_valid_and_reads_as_latin1():
    body = render_stats(global_stats(SERVER), [(BAD_MOUNT, non_utf8_stats())])
    body.decode("utf-8")
    source = ET.fromstring(body).find("source")
    assert source.get("mount") == "/ÿý.mp3"
    assert source.findtext("server_name") == "café"
    assert source.findtext("genre") == "a\ufffd\ufffdb\ufffd"
    assert source.findtext("title") == "x\ufffdy"


def test_listmounts_listclients_and_iceresponse_of_any_bytes_are_valid_xml():
    for body in (render_listmounts([ListedMount(BAD_MOUNT, 1, 2, "audio/mpeg", "\x01")],
                                   current=BAD_MOUNT),
                 render_listclients(BAD_MOUNT, [ListedClient("1.2.3.4", from_wire(b"\xff\x02"), 1, 1)]),
                 render_iceresponse("Clients moved from " + BAD_MOUNT, True)):
        ET.fromstring(body)
    client = ET.fromstring(render_listclients(
        BAD_MOUNT, [ListedClient("1.2.3.4", from_wire(b"\xff\x02"), 1, 1)])).find("source/listener")
    assert client.findtext("UserAgent") == "ÿ\ufffd"


def test_status_json_of_non_utf8_text_is_valid_json_reading_as_latin1():
    body = render_status_json(global_stats(SERVER), [public_mount_stats(non_utf8_stats())])
    source = json.loads(body)["icestats"]["source"]  # json.loads on bytes: strict UTF-8
    assert source["server_name"] == "café"
    assert source["listenurl"] == "http://h:8000/%FF%FD.mp3"
    assert source["genre"] == "a\ufffd\ufffdb\ufffd"


def test_status_json_keys_from_a_source_are_shown_too():
    body = render_status_json(global_stats(SERVER), [{"caf\udce9": "1"}])
    assert json.loads(body)["icestats"]["source"]["café"] == 1


def test_status_page_of_non_utf8_text_is_valid_html_linking_the_exact_mount():
    page = render_status_page(from_wire(b"srv\xe9"), [public_mount_stats(non_utf8_stats())])
    collected = Collect()
    collected.feed(page.decode("utf-8"))
    assert collected.cells["server_name"] == "café"
    assert collected.cells["genre"] == "a\ufffd\ufffdb\ufffd"
    assert collected.links == ["/%FF%FD.mp3"]
    assert 'data-mount="/ÿý.mp3"' in page.decode() and "<title>srvé</title>" in page.decode()


def test_metrics_of_a_non_utf8_mount_parse_and_read_as_latin1():
    family = MetricFamily("fanout_mount_listeners", "gauge", "Listeners").add(3, mount=BAD_MOUNT)
    parsed = list(text_string_to_metric_families(render_metrics([family]).decode("utf-8")))
    assert parsed[0].samples[0].labels == {"mount": "/ÿý.mp3"}


def test_audio_info_names_that_cannot_be_xml_element_names_are_dropped():
    stats = mount_stats(figures(headers=[("ice-audio-info",
                                          "<x>=1;a b=2;channels=2;" + "k" * 65 + "=3")]), "h", 1)
    assert stats["channels"] == "2"
    assert not any(key in stats for key in ("<x>", "a b", "k" * 65))
    ET.fromstring(render_stats(global_stats(SERVER), [("/m", stats)]))
