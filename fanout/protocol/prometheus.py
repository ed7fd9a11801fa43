"""The Prometheus text exposition format (version 0.0.4) for /metrics.

A metric is a `MetricFamily`: name, type, help and its samples (labels + value). Label
values come from sources (mount names, upstreams): they are shown with ``text.display``
(valid UTF-8, no control characters) and escaped as the format requires.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fanout.protocol.text import display

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Labels = tuple[tuple[str, str], ...]


@dataclass(slots=True)
class MetricFamily:
    name: str
    kind: str  # "gauge" or "counter"
    help: str
    samples: list[tuple[Labels, float]] = field(default_factory=list)

    def add(self, value: float, **labels: str) -> "MetricFamily":
        self.samples.append((tuple(labels.items()), value))
        return self


def _escape(value: str) -> str:
    # `display` leaves no line break, so only the backslash and the quote remain to escape.
    return display(value).replace("\\", "\\\\").replace('"', '\\"')


def _sample(name: str, labels: Labels, value: float) -> str:
    label_text = ",".join(f'{key}="{_escape(text)}"' for key, text in labels)
    number = repr(float(value)) if value != int(value) else str(int(value))
    return f"{name}{{{label_text}}} {number}" if labels else f"{name} {number}"


def render_metrics(families: list[MetricFamily]) -> bytes:
    """All families, each with its HELP and TYPE lines.

    In this format (unlike OpenMetrics) HELP, TYPE and the samples all carry the full
    name, so a counter's name ends in `_total` everywhere: name families accordingly."""
    lines: list[str] = []
    for family in families:
        lines.append(f"# HELP {family.name} {_escape(family.help)}")
        lines.append(f"# TYPE {family.name} {family.kind}")
        lines += [_sample(family.name, labels, value) for labels, value in family.samples]
    return ("\n".join(lines) + "\n").encode("utf-8")
