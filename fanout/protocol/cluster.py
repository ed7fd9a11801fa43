"""Cluster listener totals: a master's own listeners plus each live slave's, as reported
in its redirect registration (issue 12 §3). Pure.

The master is one node; each live slave that reports its load (fanout's registration,
`fanout.protocol.redirect.SlaveLoad`) is another, named `host:port` as it registered. A
slave's report carries its total and the listeners of its largest mounts (bounded), so
a mount's cluster figure is exact for every node that reported that mount and the
cluster total is exact whatever the bound cut. Relay pulls are never listeners: the
master does not count its slaves' pulls, and a slave reports no pull of its own slaves.
The figures show as extra keys in /status-json.xsl (Icecast's keys untouched), extra
elements in /admin/stats and `fanout_cluster_listeners{mount,node}` in /metrics.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence
from xml.sax.saxutils import quoteattr

from fanout.protocol.prometheus import MetricFamily
from fanout.protocol.stats import Stats
from fanout.protocol.text import display

CLUSTER_LISTENERS = "cluster_listeners"  # the stats key, global and per mount
CLUSTER_NODES = "cluster_nodes"  # global: nodes counted (this server included)


@dataclass(frozen=True, slots=True)
class NodeListeners:
    """One node's listeners: its total and per mount (as far as it reported them)."""

    node: str  # "host:port"
    listeners: int
    mounts: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterTotals:
    nodes: tuple[NodeListeners, ...]  # this server first, then the slaves in table order
    listeners: int  # every node's total, summed
    mounts: tuple[tuple[str, int], ...]  # per mount, summed over the nodes that reported it

    def mount_listeners(self, mount: str) -> int:
        return dict(self.mounts).get(mount, 0)


def node_name(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def cluster_totals(own: NodeListeners, slaves: Sequence[NodeListeners]) -> ClusterTotals:
    """`own` plus every slave (the caller passes the live ones only)."""
    nodes = (own, *slaves)
    mounts: dict[str, int] = {}
    for node in nodes:
        for mount, count in node.mounts:
            mounts[mount] = mounts.get(mount, 0) + count
    return ClusterTotals(nodes, sum(node.listeners for node in nodes), tuple(sorted(mounts.items())))


def global_cluster_stats(totals: ClusterTotals) -> Stats:
    """The extra global keys (/admin/stats elements, /status-json.xsl keys)."""
    return {CLUSTER_LISTENERS: str(totals.listeners), CLUSTER_NODES: str(len(totals.nodes))}


def with_cluster_keys(values: Stats, extra: Mapping[str, str]) -> Stats:
    """`values` with `extra` added, kept in key order as Icecast's stats tree is."""
    return dict(sorted({**values, **extra}.items()))


def mount_cluster_stats(totals: ClusterTotals, mount: str) -> Stats:
    """The extra per-mount key: the mount's listeners over the whole cluster."""
    return {CLUSTER_LISTENERS: str(totals.mount_listeners(mount))}


def cluster_xml(totals: ClusterTotals) -> str:
    """The `<cluster>` element of /admin/stats: one `<node>` per node, its mounts inside."""
    return "<cluster>" + "".join(_node_xml(node) for node in totals.nodes) + "</cluster>"


def _node_xml(node: NodeListeners) -> str:
    mounts = "".join(f"<source mount={quoteattr(display(mount))}><listeners>{count}"
                     f"</listeners></source>" for mount, count in node.mounts)
    return (f"<node name={quoteattr(display(node.node))}><listeners>{node.listeners}"
            f"</listeners>{mounts}</node>")


def cluster_families(totals: ClusterTotals) -> list[MetricFamily]:
    """`fanout_cluster_listeners{mount,node}` per node and reported mount, and
    `fanout_cluster_node_listeners{node}`, each node's total."""
    per_mount = MetricFamily("fanout_cluster_listeners", "gauge",
                             "Listeners of a mount on one node of the cluster (as reported)")
    per_node = MetricFamily("fanout_cluster_node_listeners", "gauge",
                            "Listeners on one node of the cluster (as reported)")
    for node in totals.nodes:
        per_node.add(node.listeners, node=node.node)
        for mount, count in node.mounts:
            per_mount.add(count, mount=mount, node=node.node)
    return [per_mount, per_node]
