"""Declarative tag tables: XML element → converter → dataclass field.

Theory of operation. ``xmltodict`` turns an element into ``None`` (empty), a string
(text only) or a dict of children, where a repeated child becomes a list and attributes
are keys starting with ``@``. Each section of ``icecast.xml`` has a table of ``Tag`` rows,
in the spirit of Icecast-KH's ``configfile_t`` arrays: the tag, the field it sets and the
reader that turns the element into a value. ``read_children`` walks an element's
children in order, looks each up in the table and collects ``field → value``; a section
reader then builds its dataclass from those keywords, so fields absent from the XML keep
the dataclass default. Unknown tags become a warning naming their XML path; tags
recognised but not acted on have no field and are skipped; a bad value raises
``ConfigError`` with the path, the text and what was expected. Whether an element that
is read is also *acted on* is not the engine's business: ``ReadContext.not_yet`` (the
table in ``support.py``) names the elements fanout accepts but does not implement yet,
and each one present in the file is warned about with its path.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
import re
from typing import Any, Callable, Iterable, Iterator, Mapping, Protocol, TypeVar

from .converters import BadValue, Converter
from .errors import ConfigError

T = TypeVar("T")
Node = Any  # one element as xmltodict gives it: None, str or dict
Values = dict[str, Any]  # field name → value, for the tags present


class PendingElement(Protocol):
    """An element accepted but not implemented yet (``support.NotYet``)."""

    @property
    def reason(self) -> str:
        """Why, for the operator."""

    def applies(self, value: Any) -> bool:
        """Whether ``value`` (as read; None for an element not read) asks for the feature."""


@dataclass(slots=True)
class ReadContext:
    """What reading one file accumulates, besides the values themselves."""

    warnings: list[str] = field(default_factory=list)
    # <relays-on-demand> as read so far: 2.4.4 copies it into each <relay> when it
    # meets one, so a later global value does not apply to earlier relays (§8.24).
    relays_on_demand: bool = False
    # Generic element path (no [n] indices) → why it is not implemented yet.
    not_yet: Mapping[str, PendingElement] = field(default_factory=dict)

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{path}: {message}")

    def check_implemented(self, path: str, value: Any) -> None:
        """Warn about the element at ``path`` if it asks for something not implemented yet."""
        pending = self.not_yet.get(generic_path(path))
        if pending is not None and pending.applies(value):
            self.warn(path, f"not implemented yet, ignored: {pending.reason}")


_INDEX = re.compile(r"\[[0-9]+\]")


def generic_path(path: str) -> str:
    """``icecast/mount[2]/intro`` → ``icecast/mount/intro``: the path a table row has."""
    return _INDEX.sub("", path)


Reader = Callable[[Node, str, ReadContext], Any]
Builder = Callable[[Values, str, ReadContext], T]  # a section's values → its dataclass

# Tag.field value for a sub-element whose values belong to the parent element itself.
MERGE = "*"


@dataclass(frozen=True, slots=True)
class Tag:
    """One row: element (or ``@attribute``) ``name`` sets ``field`` to ``read(node)``.

    ``field`` None: recognised, deliberately not acted on (no warning, not read).
    ``repeat``: the element may occur many times; the field collects a tuple.
    """

    name: str
    field: str | None
    read: Reader | None = None
    repeat: bool = False


TagTable = Mapping[str, Tag]


def table(*rows: Tag | Iterable[Tag]) -> TagTable:
    """Build a lookup table from rows and groups of rows (see ``accepted``)."""
    flat: dict[str, Tag] = {}
    for row in rows:
        for tag in [row] if isinstance(row, Tag) else row:
            flat[tag.name] = tag
    return flat


def value(name: str, convert: Converter[Any], field: str | None = None) -> Tag:
    """A text element (or attribute); ``field`` defaults to the name, ``-`` → ``_``."""
    return Tag(name, field or _field_name(name), text_reader(convert))


def element(name: str, read: Reader, field: str | None = None, repeat: bool = False) -> Tag:
    """An element with children, read by ``read`` (usually a ``section``)."""
    return Tag(name, field or _field_name(name), read, repeat)


def accepted(*names: str) -> tuple[Tag, ...]:
    """Elements we recognise and deliberately ignore, children and all."""
    return tuple(Tag(name, None) for name in names)


def _field_name(tag: str) -> str:
    return tag.lstrip("@").replace("-", "_")


def text_reader(convert: Converter[Any]) -> Reader:
    """Return a reader converting an element's stripped text, naming path and text on error."""

    def read(node: Node, path: str, ctx: ReadContext) -> Any:
        text = element_text(node, path, ctx)
        try:
            return convert(text)
        except BadValue as error:
            raise ConfigError(path, text, error.expected) from None

    return read


def element_text(node: Node, path: str, ctx: ReadContext) -> str:
    """The text of a value element; child elements or attributes in it are warned about."""
    if node is None:
        return ""
    if isinstance(node, str):
        return node.strip()
    for name, _ in _children(node):
        if name != "#text":
            ctx.warn(f"{path}/{name}", f"unknown {_kind(name)}, ignored")
    return str(node.get("#text") or "").strip()


class Section:
    """A reader for an element with children: reads them by ``rows``, then ``build``s.

    ``rows`` stays visible so the whole tree of tables can be walked (``element_paths``).
    """

    def __init__(self, build: Builder[Any], rows: TagTable) -> None:
        self.build = build
        self.rows = rows

    def __call__(self, node: Node, path: str, ctx: ReadContext) -> Any:
        return self.build(read_children(children_of(node), path, self.rows, ctx), path, ctx)


def section(build: Builder[T], rows: TagTable) -> Section:
    """Return a reader that reads an element's children by ``rows``, then ``build``s."""
    return Section(build, rows)


def element_paths(rows: TagTable, path: str) -> Iterator[str]:
    """Every element (and attribute) path the tables accept below ``path``, generic form."""
    for name, tag in rows.items():
        yield f"{path}/{name}"
        if isinstance(tag.read, Section):
            yield from element_paths(tag.read.rows, f"{path}/{name}")


def keywords(cls: Callable[..., T]) -> Builder[T]:
    """The simplest ``build``: every value is a keyword of ``cls``."""
    return lambda values, path, ctx: cls(**values)


def children_of(node: Node) -> list[tuple[str, Node]]:
    """An element's children (and attributes) as ``(name, node)`` pairs, repeats unrolled."""
    if node is None:
        return []
    if isinstance(node, str):
        return [("#text", node)] if node.strip() else []
    return list(_children(node))


def _children(node: Mapping[str, Any]) -> Iterator[tuple[str, Node]]:
    for name, content in node.items():
        for one in content if isinstance(content, list) else [content]:
            yield name, one


def read_children(
    children: Iterable[tuple[str, Node]], path: str, rows: TagTable, ctx: ReadContext
) -> Values:
    """Read ``children`` in order by ``rows``; return ``field → value`` for those present."""
    values: Values = {}
    seen: Counter[str] = Counter()
    for name, node in children:
        seen[name] += 1
        tag = rows.get(name)
        where = _child_path(path, name, seen[name], tag is not None and tag.repeat)
        if name == "#text":
            ctx.warn(path, f"text {str(node).strip()!r} ignored")
        elif tag is None:
            ctx.warn(where, f"unknown {_kind(name)}, ignored")
        elif tag.field is not None and tag.read is not None:
            result = tag.read(node, where, ctx)
            _store(values, tag.field, tag.repeat, result, where, ctx)
            ctx.check_implemented(where, result)
        else:
            ctx.check_implemented(where, None)
    return values


def _store(values: Values, field: str, repeat: bool, result: Any, where: str, ctx: ReadContext) -> None:
    if field == MERGE:
        values.update(result)
    elif repeat:
        values[field] = values.get(field, ()) + (result,)
    else:
        if field in values:
            ctx.warn(where, "sets a value already given; this later one wins")
        values[field] = result


def _child_path(path: str, name: str, occurrence: int, repeatable: bool) -> str:
    if name.startswith("@"):
        return f"{path}/{name}"
    if repeatable or occurrence > 1:
        return f"{path}/{name}[{occurrence}]"
    return f"{path}/{name}"


def _kind(name: str) -> str:
    return "attribute" if name.startswith("@") else "element"
