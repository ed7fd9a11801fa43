"""A strict little HTML tree for renderer tests (stdlib `html.parser`, no library).

Strict where our pages must be: every element closed by its own end tag (void elements
excepted), nothing left open, the document valid UTF-8. Text is character-reference
decoded, so a test compares what a browser would show.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta",
                  "source", "track", "wbr"})


@dataclass
class Element:
    tag: str
    attrs: dict[str, str | None]
    children: list["Element | str"] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return (self.attrs.get("class") or "").split()

    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def walk(self, into_templates: bool = False):
        for child in self.children:
            if isinstance(child, Element):
                yield child
                if child.tag != "template" or into_templates:
                    yield from child.walk(into_templates)

    def find_all(self, tag: str | None = None, cls: str | None = None,
                 into_templates: bool = False, **attrs: str) -> list["Element"]:
        return [e for e in self.walk(into_templates)
                if (tag is None or e.tag == tag) and (cls is None or cls in e.classes)
                and all(e.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())]

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> "Element":
        found = self.find_all(tag, cls, **attrs)
        assert found, f"no <{tag or '*'} class={cls!r} {attrs}> in <{self.tag}>"
        return found[0]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = [name for name, _ in attrs]
        assert len(names) == len(set(names)), f"duplicate attribute in <{tag}>: {names}"
        element = Element(tag, dict(attrs))
        self.stack[-1].children.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in VOID:
            self.stack.pop()

    def handle_endtag(self, tag: str) -> None:
        assert tag not in VOID, f"end tag for void <{tag}>"
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse_html(page: bytes) -> Element:
    """The document tree of ``page``; AssertionError if it is not strictly well formed."""
    builder = _Builder()
    builder.feed(page.decode("utf-8"))  # strict UTF-8: raises on any invalid byte
    builder.close()
    assert builder.stack == [builder.root], f"left open: {[e.tag for e in builder.stack[1:]]}"
    return builder.root
