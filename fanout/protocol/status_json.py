"""/status-json.xsl exactly as Icecast 2.4.4's xml2json stylesheet writes it (§6.4),
and the /health answer.

Icecast's shape has quirks clients depend on: `source` is an object for one mount, an
array for several and absent for none; numeric-looking text (no leading zero) becomes a
number, "true"/"false" booleans; every object ends with `"dummy":null` where the
stylesheet dropped an element. Every key and text is shown with ``text.display``, so the
document is valid UTF-8 JSON whatever bytes a source sent.
"""
from __future__ import annotations

import json
import re
from typing import Any, Sequence

from fanout.protocol.stats import PUBLIC_GLOBAL_KEYS, Stats
from fanout.protocol.text import display

JSON_TYPE = "application/json; charset=UTF-8"
# xml2json's test for a number: digits, an optional fraction, no leading zero (but "0").
_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")


def json_value(text: str) -> Any:
    """Icecast's typing of a stats text: number, boolean or string (``text.display``)."""
    text = display(text)
    if _NUMBER.fullmatch(text):
        return float(text) if "." in text else int(text)
    if text in ("true", "false"):
        return text == "true"
    return text


def render_status_json(global_values: Stats, mounts: Sequence[Stats],
                       extra_global: Stats | None = None) -> bytes:
    """The whole document; `mounts` are public mount stats (see stats.public_mount_stats).
    `extra_global`: fanout's own keys (cluster totals), after Icecast's, which they never
    replace."""
    icestats: dict[str, Any] = {k: json_value(global_values[k]) for k in PUBLIC_GLOBAL_KEYS}
    for key, value in (extra_global or {}).items():
        icestats.setdefault(display(key), json_value(value))
    sources = [{**{display(k): json_value(v) for k, v in m.items()}, "dummy": None}
               for m in mounts]
    if len(sources) == 1:
        icestats["source"] = sources[0]
    elif sources:
        icestats["source"] = sources
    else:
        icestats["dummy"] = None
    return json.dumps({"icestats": icestats}, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")


def render_health(serving: bool, mounts: int, uptime: float) -> bytes:
    """The /health body (the caller answers 200 when `serving`, else 503)."""
    body = {"status": "ok" if serving else "shutting_down", "mounts": mounts,
            "uptime_seconds": round(uptime, 3)}
    return json.dumps(body, separators=(",", ":")).encode()
