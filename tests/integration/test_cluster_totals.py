"""A master's cluster totals (issue 12 §3): its own listeners plus each live fanout
slave's report, in /status-json.xsl, /admin/stats, /metrics and on the status page, with
relay pulls never counted."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from tests.integration.test_redirect import get, redirecting_slave_xml
from tests.integration.test_relay import PacedSource, servers, wait_status  # noqa: F401
from tests.support.clients import Listener, basic
from tests.support.server import ADMIN_PASSWORD, icecast_xml
from tests.support.waiting import wait_for

ADMIN = f"Authorization: {basic('admin', ADMIN_PASSWORD)}\r\n"


def body(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]


def status_json(server) -> dict:
    return json.loads(body(get(server, "/status-json.xsl")))["icestats"]


def test_the_master_shows_its_listeners_plus_its_slaves_everywhere(servers):
    master = servers("master", icecast_xml(extra="<max-redirect-slaves>2</max-redirect-slaves>"),
                     workers=1)
    source = PacedSource(master, "/live", chunk=1024, pace=0.05)
    listeners: list[Listener] = []
    try:
        slave = servers("slave", redirecting_slave_xml(master), workers=1)
        wait_status(slave, "/live", 200, 10)
        # wait_status's probes were listeners: wait until both servers count none.
        wait_for(lambda: status_json(master).get("cluster_listeners") == 0, 10,
                 "a cluster without listeners")
        listeners += [Listener(master.host, master.port, "/live").start()]
        listeners += [Listener(slave.host, slave.port, "/live").start() for _ in range(2)]
        wait_for(lambda: status_json(master).get("cluster_listeners") == 3, 10,
                 "the slave's two listeners reported to the master")
        icestats = status_json(master)
        assert icestats["cluster_nodes"] == 2
        # Its own count has no relay pull in it: the slave's pull of /live is not a listener.
        assert (icestats["source"]["listeners"], icestats["source"]["cluster_listeners"]) == (1, 3)
        assert icestats["host"] == "127.0.0.1" and "listeners" not in icestats  # Icecast's keys
        slave_node, master_node = f"127.0.0.1:{slave.port}", f"127.0.0.1:{master.port}"

        stats = ET.fromstring(body(get(master, "/admin/stats", ADMIN)))
        assert stats.findtext("cluster_listeners") == "3"
        assert stats.findtext("listeners") == "1"
        assert stats.find("source").findtext("cluster_listeners") == "3"  # type: ignore[union-attr]
        nodes = {n.get("name"): n.findtext("listeners") for n in stats.findall("cluster/node")}
        assert nodes == {master_node: "1", slave_node: "2"}

        metrics = body(get(master, "/metrics")).decode()
        assert f'fanout_cluster_listeners{{mount="/live",node="{slave_node}"}} 2' in metrics
        assert f'fanout_cluster_listeners{{mount="/live",node="{master_node}"}} 1' in metrics

        page = body(get(master, "/")).decode()
        assert '<span class="cluster_total">3</span> listeners on 2 servers' in page
        assert '<span class="cluster_listeners">3</span> in the cluster' in page

        # The slave is no master: none of it there.
        assert "cluster_listeners" not in status_json(slave)
        assert "fanout_cluster" not in body(get(slave, "/metrics")).decode()
    finally:
        for listener in listeners:
            listener.close()
        source.close()
