"""/status-json.xsl exactly as Icecast 2.4.4's xml2json stylesheet writes it (§6.4),
and the /health answer.

Icecast's shape has quirks clients depend on: `source` is an object for one mount, an
array for several and absent for none; numeric-looking text (no leading zero: "0.3" is a
string) becomes a number, "true"/"false" booleans, empty text null; an object ends with
`"dummy":null` where the stylesheet dropped its last element. Every key and text is
shown with ``text.display``, so the document is valid UTF-8 JSON whatever bytes a
source sent.
"""
from __future__ import annotations

import json
import re
from typing import Any, Sequence

from fanout.protocol.stats import PUBLIC_GLOBAL_KEYS, Stats, public_mount_stats
from fanout.protocol.text import display

JSON_TYPE = "application/json; charset=UTF-8"
# XPath's number(): optional XML spaces, an optional minus, digits with an optional
# fraction or a bare fraction (".5"). xml2json takes any such text for a number unless it
# starts with "0" and is not "0" itself ("0.3" and "007" stay strings).
_XPATH_NUMBER = re.compile(r"[ \t\r\n]*-?([0-9]+(\.[0-9]*)?|\.[0-9]+)[ \t\r\n]*")
# What JSON itself takes for a number.
_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?")
# xml2json's booleans: "true"/"false" with any of their letters upper-cased.
_TRUE, _FALSE = str.maketrans("TRUE", "true"), str.maketrans("FALSE", "false")


def json_value(text: str) -> Any:
    """Icecast's typing of a stats text (``text.display``): a number, a boolean, null for
    an empty text (an element without content), else a string.

    xml2json writes a number's text as it stands; where that text is no JSON number
    (".5", "5.", "-05") Icecast's document is not JSON at all, so we keep it a string."""
    text = display(text)
    if not text:
        return None
    if _XPATH_NUMBER.fullmatch(text) and not (text.startswith("0") and text != "0"):
        number = text.strip(" \t\r\n")
        if _JSON_NUMBER.fullmatch(number):
            return float(number) if "." in number else int(number)
        return text
    if text.translate(_TRUE) == "true":
        return True
    if text.translate(_FALSE) == "false":
        return False
    return text


def render_status_json(global_values: Stats, mounts: Sequence[Stats],
                       extra_global: Stats | None = None) -> bytes:
    """The whole document. `mounts`: each public mount's stats as /admin/stats has them
    (``stats.mount_stats``), of which the stylesheet's keys are shown
    (``stats.public_mount_stats``). `extra_global`: fanout's own keys (cluster totals),
    after Icecast's, which they never replace."""
    icestats: dict[str, Any] = {k: json_value(global_values[k]) for k in PUBLIC_GLOBAL_KEYS}
    for key, value in (extra_global or {}).items():
        icestats.setdefault(display(key), json_value(value))
    sources = [source_object(m) for m in mounts]
    if len(sources) == 1:
        icestats["source"] = sources[0]
    elif sources:
        icestats["source"] = sources
    else:
        icestats["dummy"] = None
    return json.dumps({"icestats": icestats}, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")


def source_object(stats: Stats) -> dict[str, Any]:
    """One mount's object: its public keys, then ``"dummy":null`` where the stylesheet
    writes it: when it dropped the mount's last element (the key that sorts last)."""
    shown: dict[str, Any] = {display(k): json_value(v) for k, v in public_mount_stats(stats).items()}
    last = next(reversed(stats), None)
    if last is not None and last not in shown:
        shown["dummy"] = None
    return shown


def render_health(serving: bool, mounts: int, uptime: float) -> bytes:
    """The /health body (the caller answers 200 when `serving`, else 503)."""
    body = {"status": "ok" if serving else "shutting_down", "mounts": mounts,
            "uptime_seconds": round(uptime, 3)}
    return json.dumps(body, separators=(",", ":")).encode()
