"""Cluster listener totals (issue 12 §3): own + live slaves' reported listeners, and the
extra keys and elements that show them. Pure."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from prometheus_client.parser import text_string_to_metric_families

from fanout.protocol.cluster import (
    CLUSTER_LISTENERS, ClusterTotals, NodeListeners, cluster_families, cluster_totals,
    cluster_xml, global_cluster_stats, mount_cluster_stats, node_name, with_cluster_keys,
)
from fanout.protocol.prometheus import render_metrics
from fanout.protocol.redirect import SlaveLoad
from fanout.protocol.stats import PUBLIC_GLOBAL_KEYS
from fanout.protocol.stats_xml import render_stats
from fanout.protocol.status_json import render_status_json
from fanout.redirects import RedirectTable, slave_listeners

OWN = NodeListeners("master:8000", 5, (("/live.mp3", 4), ("/talk.ogg", 1)))
SLAVES = [NodeListeners("relay1:8000", 40, (("/live.mp3", 30), ("/talk.ogg", 10))),
          NodeListeners("[::1]:8001", 7, (("/live.mp3", 7),))]
GLOBAL = {key: "x" for key in PUBLIC_GLOBAL_KEYS} | {"listeners": "5", "clients": "9"}


def totals() -> ClusterTotals:
    return cluster_totals(OWN, SLAVES)


def test_totals_are_own_plus_every_slave_per_mount_and_overall():
    result = totals()
    assert result.listeners == 52
    assert result.mounts == (("/live.mp3", 41), ("/talk.ogg", 11))
    assert [node.node for node in result.nodes] == ["master:8000", "relay1:8000", "[::1]:8001"]
    assert result.mount_listeners("/nowhere") == 0


def test_a_slave_total_counts_even_for_mounts_its_report_left_out():
    cut = NodeListeners("relay2:8000", 100, (("/live.mp3", 60),))  # 40 on unreported mounts
    result = cluster_totals(OWN, [cut])
    assert (result.listeners, result.mount_listeners("/live.mp3")) == (105, 64)


def test_only_live_slaves_that_report_load_are_nodes():
    table = RedirectTable(5, static=[("static", 8000)])
    table.register("fast", 8000, 30, now=0.0, load=SlaveLoad(3, 9, True, 0.5, (("/a", 3),)))
    table.register("kh", 8000, 30, now=0.0)  # a KH slave reports nothing
    table.register("gone", 8000, 30, now=0.0, load=SlaveLoad(8, 9, True, 0.5))
    table.register("sick", 8000, 30, now=0.0, load=SlaveLoad(2, 9, False, 0.5))
    table.mark_dead("gone", 8000, now=0.1)
    assert slave_listeners(table.targets(), now=0.2) == [
        NodeListeners("fast:8000", 3, (("/a", 3),)), NodeListeners("sick:8000", 2, ())]
    assert slave_listeners(table.targets(), now=1.5) == []  # expired on the fast schedule


def test_node_names_bracket_ipv6_hosts():
    assert (node_name("h", 1), node_name("::1", 2)) == ("h:1", "[::1]:2")


def test_status_json_gains_cluster_keys_and_keeps_icecasts():
    mount = with_cluster_keys({"listeners": "4", "title": "t"}, mount_cluster_stats(totals(), "/live.mp3"))
    plain = json.loads(render_status_json(GLOBAL, [{"listeners": "4", "title": "t"}]))
    body = json.loads(render_status_json(GLOBAL, [mount], global_cluster_stats(totals())))
    icestats = body["icestats"]
    assert {k: icestats[k] for k in plain["icestats"]} == plain["icestats"] | {"source": icestats["source"]}
    assert (icestats["cluster_listeners"], icestats["cluster_nodes"]) == (52, 3)
    assert icestats["source"]["cluster_listeners"] == 41
    assert icestats["source"]["listeners"] == 4  # this server's own, as Icecast's key says


def test_extra_keys_never_replace_icecasts():
    body = json.loads(render_status_json(GLOBAL, [], {"host": "evil", CLUSTER_LISTENERS: "1"}))
    assert body["icestats"]["host"] == "x"


def test_admin_stats_gains_cluster_elements_in_valid_xml():
    hostile = cluster_totals(NodeListeners('a"<&>:1', 1, (("/x<y>&\"", 1),)), [])
    global_values = with_cluster_keys(GLOBAL, global_cluster_stats(totals()))
    mounts = [("/live.mp3", with_cluster_keys({"listeners": "4"}, mount_cluster_stats(totals(), "/live.mp3")))]
    root = ET.fromstring(render_stats(global_values, mounts, cluster_xml(totals()) + cluster_xml(hostile)))
    assert root.findtext("cluster_listeners") == "52"
    assert root.find("source").findtext("cluster_listeners") == "41"  # type: ignore[union-attr]
    nodes = root.findall("cluster/node")
    assert [(n.get("name"), n.findtext("listeners")) for n in nodes[:3]] == [
        ("master:8000", "5"), ("relay1:8000", "40"), ("[::1]:8001", "7")]
    assert nodes[3].get("name") == 'a"<&>:1' and nodes[3].find("source").get("mount") == '/x<y>&"'  # type: ignore[union-attr]
    assert list(global_values) == sorted(global_values)


def test_metrics_have_listeners_per_mount_and_node():
    text = render_metrics(cluster_families(totals())).decode()
    assert 'fanout_cluster_listeners{mount="/live.mp3",node="relay1:8000"} 30' in text
    assert 'fanout_cluster_listeners{mount="/talk.ogg",node="master:8000"} 1' in text
    assert 'fanout_cluster_node_listeners{node="[::1]:8001"} 7' in text
    assert "# TYPE fanout_cluster_listeners gauge" in text


def test_metrics_parse_with_prometheus_client():
    hostile = cluster_totals(NodeListeners('n"\\\n:1', 2, (('/a"b\\', 2),)), SLAVES)
    families = {f.name: f for f in text_string_to_metric_families(
        render_metrics(cluster_families(hostile)).decode())}
    samples = {(s.labels["mount"], s.labels["node"]): s.value
               for s in families["fanout_cluster_listeners"].samples}
    assert samples[("/live.mp3", "relay1:8000")] == 30
    assert sum(s.value for s in families["fanout_cluster_node_listeners"].samples) == 49
