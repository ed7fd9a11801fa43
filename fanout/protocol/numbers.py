"""Decimal numbers in peer text, read without letting a long digit string raise.

Peers send numbers in headers and queries (``Icy-MetaData``, ``icy-metaint``, an auth
server's time limit, a slave's ``rport``/``interval``). Python's ``int()`` refuses decimal
strings longer than 4300 digits with ValueError, and a huge value that does get through
breaks later arithmetic (``now + interval`` overflows a float). Icecast reads these with
C's ``atoi``/``strtol``, which saturate: so do we, at ``LONG_MAX``.
"""

from __future__ import annotations

import re

# glibc's strtol (behind atoi) clamps out-of-range values to LONG_MAX / LONG_MIN.
LONG_MAX = 2**63 - 1
_DECIMAL = re.compile(r"([+-]?)0*([0-9]+)")  # ASCII digits only: "²" is a digit to str.isdigit()


def saturated_int(text: str) -> int:
    """Return the value of ``text`` (an optional sign and ASCII digits), clamped to
    ±``LONG_MAX``. Raises ValueError if ``text`` is not of that form."""
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise ValueError(f"not a decimal integer: {text[:40]!r}")
    sign, digits = match.groups()
    magnitude = LONG_MAX if len(digits) > len(str(LONG_MAX)) else min(int(digits), LONG_MAX)
    return -magnitude if sign == "-" else magnitude
