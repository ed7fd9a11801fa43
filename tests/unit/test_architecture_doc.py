"""docs/ARCHITECTURE.md says what the code does: its message table is the message
dataclasses (names, directions, fields in order) and its lifecycle tables are
fanout.lifecycle's transition tables, row for row."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from fanout import messages
from fanout.lifecycle import MOUNT_TRANSITIONS, RELAY_TRANSITIONS

PAGE = Path(__file__).resolve().parents[2] / "docs" / "ARCHITECTURE.md"
CODE = re.compile(r"`([^`]+)`")


def section(title: str) -> str:
    text = PAGE.read_text()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def rows(text: str) -> list[list[str]]:
    """The cells of every table row of `text` (header and rule rows left out)."""
    found = []
    for line in text.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            found.append([cell.strip() for cell in line.strip("|").split("|")])
    return [row for row in found if row[0] not in ("message", "state")]


def test_the_message_table_is_the_message_dataclasses():
    documented = {(CODE.findall(name)[0], direction, tuple(CODE.findall(fields)))
                  for name, direction, fields, _meaning in rows(section("Control messages"))}
    in_code = {(kind.__name__, direction, tuple(f.name for f in dataclasses.fields(kind)))
               for kinds, direction in ((messages.TO_SUPERVISOR, "W→S"),
                                        (messages.TO_WORKER, "S→W"))
               for kind in kinds}
    assert documented == in_code


def lifecycle_rows(title_start: str) -> set[tuple[str, str, str]]:
    text = section("Lifecycles")
    table = text[text.index(title_start):]
    end = table.find("\n\n", table.index("| state |"))
    return {tuple(CODE.findall(" ".join(row))) for row in rows(table[:end if end > 0 else None])}


def transitions(table) -> set[tuple[str, str, str]]:
    return {(state.value, event.name, following.value)
            for state, row in table.items() for event, following in row.items()}


def test_the_relay_lifecycle_table_is_the_codes():
    assert lifecycle_rows("**A relay pull**") == transitions(RELAY_TRANSITIONS)


def test_the_mount_lifecycle_table_is_the_codes():
    assert lifecycle_rows("**A mount in a worker**") == transitions(MOUNT_TRANSITIONS)
