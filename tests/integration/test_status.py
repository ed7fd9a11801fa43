"""Public status (§6.4), /health and /metrics through a real fanout with two workers; the
JSON is compared with what a real Icecast 2.4.4 answers for the same sources."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from urllib.parse import urlsplit

import pytest
from prometheus_client.parser import text_string_to_metric_families

from fanout import __version__
from fanout.protocol.identity import default_server_id
from tests.support.admin import ADMIN, get, listeners_on_every_worker
from tests.support.clients import Listener, Source
from tests.support.server import icecast_xml, start_fanout
from tests.support.waiting import wait_for

MOUNTS = "<mount><mount-name>/hidden</mount-name><hidden>1</hidden></mount>"
MP3_HEADERS = {"ice-name": "Station <A> & \"B\"", "ice-description": "desc", "ice-genre": "rock",
               "ice-url": "http://example.org", "ice-bitrate": "128", "ice-public": "1",
               "ice-audio-info": "ice-samplerate=44100;ice-bitrate=128;ice-channels=2"}
MP3_FRAMES = b"\xff\xfb\x90\x00" * 4096
# Keys whose values depend on when or where each server runs.
VARYING = {"server_start", "server_start_iso8601", "stream_start", "stream_start_iso8601",
           "listenurl"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = start_fanout(icecast_xml(mounts=MOUNTS, sources=16),
                       tmp_path_factory.mktemp("status"), workers=2)
    yield srv
    assert srv.stop() == 0, srv.output()


def open_sources(host: str, port: int, password: str, mounts: dict[str, dict]) -> list[Source]:
    sources = []
    for mount, options in mounts.items():
        source = Source(host, port, mount, password=password, **options)
        assert source.accepted, source.response
        source.send(MP3_FRAMES)
        sources.append(source)
    return sources


def status(server, query: str = "") -> dict:
    answer = get(server, f"/status-json.xsl{query}", authorization=None)
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json; charset=UTF-8"
    return json.loads(answer.body)["icestats"]


def sources_of(icestats: dict) -> list[dict]:
    found = icestats.get("source", [])
    return found if isinstance(found, list) else [found]


def mounts_in(icestats: dict) -> set[str]:
    return {urlsplit(s["listenurl"]).path for s in sources_of(icestats)}


def test_status_json_has_no_source_without_mounts(server):
    icestats = status(server)
    assert "source" not in icestats
    assert icestats["host"] == "127.0.0.1"
    assert icestats["server_id"] == default_server_id(__version__)


def test_status_json_source_is_an_object_for_one_mount_and_hidden_mounts_are_absent(server):
    sources = open_sources(server.host, server.port, "hackme-source",
                           {"/one": {"content_type": "audio/mpeg"}, "/hidden": {}})
    wait_for(lambda: "source" in status(server), 5, "the mount in the status")
    one = status(server)["source"]
    assert isinstance(one, dict)
    assert one["listenurl"] == f"http://127.0.0.1:{server.port}/one"
    assert one["listeners"] == 0 and one["dummy"] is None
    assert "source_ip" not in one and "total_bytes_sent" not in one
    for source in sources:
        source.close()
    wait_for(lambda: "source" not in status(server), 5, "the mount to go")


def test_status_json_mount_filter_and_listeners_over_workers(server):
    sources = open_sources(server.host, server.port, "hackme-source", {"/f1": {}, "/f2": {}})
    wait_for(lambda: mounts_in(status(server)) == {"/f1", "/f2"}, 5, "both mounts listed")
    listeners = listeners_on_every_worker(server, "/f2")
    filtered = status(server, "?mount=/f2")
    assert isinstance(filtered["source"], dict)
    wait_for(lambda: status(server, "?mount=/f2")["source"]["listeners"] == len(listeners), 5,
             "every listener counted")
    assert status(server, "?mount=/f2")["source"]["listener_peak"] >= len(listeners)
    for listener in listeners:
        listener.close()
    for source in sources:
        source.close()


def test_health_answers_200_without_credentials(server):
    answer = get(server, "/health", authorization=None)
    assert answer.status == 200
    assert json.loads(answer.body)["status"] == "ok"


def metrics(server, authorization=None) -> dict:
    answer = get(server, "/metrics", authorization)
    assert answer.status == 200 and answer.headers["content-type"].startswith("text/plain")
    return {f.name: f for f in text_string_to_metric_families(answer.body.decode())}


def sample(families: dict, family: str, **labels: str) -> float | None:
    for s in families[family].samples:
        if all(s.labels.get(k) == v for k, v in labels.items()) and not s.name.endswith("_created"):
            return s.value
    return None


def test_metrics_parse_and_count_listeners_over_workers(server):
    sources = open_sources(server.host, server.port, "hackme-source", {"/met": {}})
    wait_for(lambda: "/met" in mounts_in(status(server)), 5, "the mount")
    listeners = listeners_on_every_worker(server, "/met")
    wait_for(lambda: sample(metrics(server), "fanout_mount_listeners", mount="/met") == len(listeners),
             5, "every listener counted")
    families = metrics(server)
    assert sample(families, "fanout_mount_source_connected", mount="/met") == 1
    assert sample(families, "fanout_mount_read_bytes", mount="/met") == len(MP3_FRAMES)
    assert sample(families, "fanout_connections_accepted") >= len(listeners)
    assert len(families["fanout_worker_resident_memory_bytes"].samples) == 2
    assert sample(families, "fanout_uptime_seconds") > 0
    for listener in listeners:
        listener.close()
    for source in sources:
        source.close()


def test_metrics_show_hidden_mounts_only_to_the_admin(server):
    sources = open_sources(server.host, server.port, "hackme-source", {"/hidden": {}})
    wait_for(lambda: sample(metrics(server, ADMIN), "fanout_mount_source_connected",
                            mount="/hidden") == 1, 5, "the hidden mount for the admin")
    assert sample(metrics(server), "fanout_mount_source_connected", mount="/hidden") is None
    for source in sources:
        source.close()


def test_metrics_count_refusals_by_reason(server):
    get(server, "/no-such-mount", authorization=None)
    assert sample(metrics(server), "fanout_requests_refused", reason="not_found") >= 1


# --- the same sources on a real Icecast 2.4.4 -------------------------------------------------


@pytest.fixture(scope="module")
def icecast():
    from fanout.bench.icecast import new_config, start_icecast

    if shutil.which("icecast2", path="/usr/bin:/usr/sbin:/usr/local/bin") is None:
        pytest.skip("icecast2 is not installed")
    config = new_config()
    ice = start_icecast(config)
    yield ice, config
    ice.stop()


@pytest.fixture(scope="module")
def twin(icecast, tmp_path_factory):
    """fanout given the very icecast.xml the real Icecast runs with (another port)."""
    from fanout.bench.icecast import new_config, render_icecast_xml

    _, config = icecast
    own = replace(config, port=new_config().port)
    workdir = tmp_path_factory.mktemp("twin")
    # Only the log level differs: the test harness waits for the info-level "booted" lines.
    text = render_icecast_xml(own, workdir).replace("<loglevel>2</loglevel>", "<loglevel>3</loglevel>")
    srv = start_fanout(text, workdir, workers=2)
    yield srv, own
    srv.stop()


SAME_SOURCES = {"/a.mp3": {"content_type": "audio/mpeg", "headers": MP3_HEADERS},
                "/b": {}}


@pytest.mark.interop
def test_status_json_matches_icecast_structurally(icecast, twin):
    (ice, ice_config), (fan, fan_config) = icecast, twin
    opened = (open_sources(ice.host, ice.port, ice_config.source_password, SAME_SOURCES)
              + open_sources(fan.host, fan.port, fan_config.source_password, SAME_SOURCES))
    for server in (ice, fan):  # both sources up on both servers, not just the first
        wait_for(lambda: mounts_in(status(server)) == set(SAME_SOURCES), 5,
                 "both mounts on both servers")
    for query in ("", "?mount=/b"):
        assert_same_shape(status(ice, query), status(fan, query))
    for source in opened:
        source.close()


def assert_same_shape(expected: dict, actual: dict) -> None:
    assert list(actual) == list(expected)
    assert type(actual["source"]) is type(expected["source"])
    for key in expected:  # server_id names fanout (test_stats_icecast.py says why)
        if key not in VARYING and key not in ("source", "server_id"):
            assert actual[key] == expected[key], key
    for want, got in zip(sources_of(expected), sources_of(actual), strict=True):
        assert list(got) == list(want)
        for key, value in want.items():
            assert type(got[key]) is type(value), key
            if key not in VARYING:
                assert got[key] == value, key
        assert urlsplit(got["listenurl"]).path == urlsplit(want["listenurl"]).path
