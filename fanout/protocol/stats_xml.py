"""Admin XML answers, laid out as Icecast 2.4.4 serialises them (§6.2, §6.3).

`<?xml version="1.0"?>` then the root element without indentation, then a newline. Every
text and attribute is shown with ``text.display`` and escaped: titles and names come from
sources and upstreams, and may hold any byte. The document is always valid UTF-8 XML.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence
from xml.sax.saxutils import escape, quoteattr

from fanout.protocol.stats import Stats
from fanout.protocol.text import display

XML_DECLARATION = '<?xml version="1.0"?>\n'


@dataclass(frozen=True, slots=True)
class ListedMount:
    """One /admin/listmounts entry."""

    name: str
    listeners: int
    connected: int  # seconds since the source connected
    content_type: str
    fallback: str = ""


@dataclass(frozen=True, slots=True)
class ListedClient:
    """One /admin/listclients entry."""

    ip: str
    user_agent: str
    connected: int  # seconds
    id: int


def _text(value: str) -> str:
    return escape(display(value))


def _elements(values: Stats) -> str:
    return "".join(f"<{key}>{_text(value)}</{key}>" for key, value in values.items())


def _document(body: str) -> bytes:
    return (XML_DECLARATION + body + "\n").encode("utf-8")


def _source(mount: str, inner: str) -> str:
    return f"<source mount={quoteattr(display(mount))}>{inner}</source>"


def render_stats(global_values: Stats, mounts: Iterable[tuple[str, Stats]],
                 extra_xml: str = "") -> bytes:
    """/admin/stats: the global stats, then one `<source>` per mount. `extra_xml`: fanout's
    own elements after the global ones (`cluster.cluster_xml`, already escaped)."""
    sources = "".join(_source(name, _elements(values)) for name, values in mounts)
    return _document(f"<icestats>{_elements(global_values)}{extra_xml}{sources}</icestats>")


def render_listmounts(mounts: Sequence[ListedMount], current: str | None = None) -> bytes:
    """/admin/listmounts: fallback, listeners, Connected, content-type per mount.

    With `current` (moveclients without a destination) a `<current_source>` comes first."""
    first = "" if current is None else f"<current_source>{_text(current)}</current_source>"
    return _document(f"<icestats>{first}{''.join(_listed_mount(m) for m in mounts)}</icestats>")


def _listed_mount(mount: ListedMount) -> str:
    inner = (f"<fallback>{_text(mount.fallback)}</fallback><listeners>{mount.listeners}"
             f"</listeners><Connected>{mount.connected}</Connected>"
             f"<content-type>{_text(mount.content_type)}</content-type>")
    return _source(mount.name, inner)


def render_listclients(mount: str, clients: Sequence[ListedClient]) -> bytes:
    """/admin/listclients: the count, then one `<listener>` per client."""
    listeners = "".join(
        f"<listener><IP>{_text(c.ip)}</IP><UserAgent>{_text(c.user_agent or 'Unknown')}"
        f"</UserAgent><Connected>{c.connected}</Connected><ID>{c.id}</ID></listener>"
        for c in clients)
    inner = f"<Listeners>{len(clients)}</Listeners>{listeners}"
    return _document(f"<icestats>{_source(mount, inner)}</icestats>")


def render_iceresponse(message: str, ok: bool) -> bytes:
    """The answer of commands that act (metadata, killclient, killsource, moveclients)."""
    return _document(f"<iceresponse><message>{_text(message)}</message>"
                     f"<return>{int(ok)}</return></iceresponse>")
