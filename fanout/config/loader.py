"""Reading ``icecast.xml``: text → XML → tag tables → ``Config``. Pure: reading the file is
the caller's (``fanout.startup.load_config``).

The root's children are read in document order, not grouped by tag as a plain
``xmltodict.parse`` would give them, because one 2.4.4 rule depends on order: a
``<relay>`` takes its on-demand default from the ``<relays-on-demand>`` seen before it.
``xmltodict``'s streaming mode (``item_depth=2``) hands us each child of the root in turn.
"""

from __future__ import annotations

from typing import Any
from xml.parsers.expat import ExpatError

import xmltodict

from .builders import build_config
from .errors import ConfigError
from .model import Config
from .support import NOT_YET
from .tables import ROOT
from .tagtable import Node, ReadContext, read_children

ROOT_ELEMENT = "icecast"


def parse_config(text: str | bytes, source: str = "<string>") -> Config:
    """Parse the text of an ``icecast.xml``; ``source`` names it in errors and ``Config.source``.

    Raises ``ConfigError`` for malformed XML, a root other than ``<icecast>`` or a bad value.
    """
    ctx = ReadContext(not_yet=NOT_YET)
    (name, attributes), children = _read_document(text, source)
    if name != ROOT_ELEMENT:
        raise ConfigError(source, f"<{name}>", f"<{ROOT_ELEMENT}> as the root element")
    for attribute in attributes or {}:
        ctx.warn(f"{ROOT_ELEMENT}/@{attribute}", "unknown attribute, ignored")
    values = read_children(children, ROOT_ELEMENT, ROOT, ctx)
    return build_config(values, ctx, source)


def _read_document(
    text: str | bytes, source: str
) -> tuple[tuple[str, Any], list[tuple[str, Node]]]:
    """Return the root element as ``(name, attributes)`` and its children in document order."""
    root: list[tuple[str, Any]] = []
    children: list[tuple[str, Node]] = []

    def collect(path: list[tuple[str, Any]], item: Node) -> bool:
        root[:] = path[:1]
        children.append((path[-1][0], item))
        return True

    _parse_xml(text, source, item_depth=2, item_callback=collect)
    if not root:  # the root has no child element, so the stream never named it
        root.append(_bare_root(_parse_xml(text, source)))
    return root[0], children


def _bare_root(tree: dict[str, Any]) -> tuple[str, Any]:
    name, content = next(iter(tree.items()))
    if not isinstance(content, dict):
        return name, None
    return name, {key[1:]: value for key, value in content.items() if key.startswith("@")}


def _parse_xml(text: str | bytes, source: str, **options: Any) -> Any:
    # Besides ExpatError: xmltodict raises ValueError for entity declarations (it refuses
    # them, which also keeps entity-expansion bombs out) and expat LookupError for an
    # unknown encoding in the XML declaration.
    try:
        return xmltodict.parse(text, **options)
    except (ExpatError, ValueError, LookupError) as error:
        raise ConfigError(source, str(error), "well-formed XML") from None
