"""The one exception the configuration layer raises."""

from __future__ import annotations

# A value longer than this is shortened in the message, so one bad element stays one log line.
_SHOWN_VALUE_CHARS = 80


class ConfigError(Exception):
    """A configuration we refuse to run with.

    ``path`` says where: an XML path such as ``icecast/mount[2]/max-listeners``, or the
    file name when the file itself is unreadable or not well-formed XML. ``value`` is the
    offending text (``None`` when a required element is missing) and ``expected`` says
    what would have been accepted. ``str(error)`` is one line meant for the operator.
    """

    def __init__(self, path: str, value: str | None, expected: str) -> None:
        super().__init__(path, value, expected)
        self.path = path
        self.value = value
        self.expected = expected

    def __str__(self) -> str:
        if self.value is None:
            return f"{self.path}: missing: expected {self.expected}"
        shown = self.value
        if len(shown) > _SHOWN_VALUE_CHARS:
            shown = shown[:_SHOWN_VALUE_CHARS] + "…"
        return f"{self.path}: {shown!r} is not valid: expected {self.expected}"
