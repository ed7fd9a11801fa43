"""Mount-name globs with the semantics of ``fnmatch(3)`` and ``FNM_PATHNAME``.

2.4.4 picks the ``<mount>`` block for a mount with ``fnmatch(mount-name, mount,
FNM_PATHNAME)`` (PROTOCOL.md §7.4). With that flag ``*``, ``?`` and bracket expressions
never match ``/``, so ``/live/*`` matches ``/live/a`` but not ``/live/a/b``. Python's
``fnmatch`` has no such flag (its ``*`` crosses ``/``), so patterns are translated to
``re`` here. Supported: ``*``, ``?``, ``[abc]``, ``[a-z]``, ``[!x]``/``[^x]``, a leading
``]`` inside brackets, and backslash escapes. POSIX classes such as ``[[:alpha:]]`` are not
supported (no mount name needs them). An unterminated ``[`` is a literal, as in glibc.

The name comes from a client, so matching must stay linear in its length. One ``[^/]*``
per star backtracks polynomially (``/*-*-*.ogg`` against ``/`` + 2,000 ``-`` took 11 s), so
as in CPython's ``fnmatch`` every star but the last is matched lazily inside an atomic
group: the fixed-width chunk after it is taken at its leftmost place, which is always
enough when the chunk holds no ``/`` (the next star can absorb the rest).
"""

from __future__ import annotations

import functools
import re

# Distinct mount-name patterns per config are few; this only bounds a hostile reload loop.
_COMPILED_PATTERNS = 512


def mount_matches(pattern: str, name: str) -> bool:
    """Return True if ``name`` equals ``pattern`` or matches it as an FNM_PATHNAME glob."""
    return pattern == name or _compile(pattern).fullmatch(name) is not None


@functools.lru_cache(maxsize=_COMPILED_PATTERNS)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(_translate(pattern), re.DOTALL)


def _translate(pattern: str) -> str:
    head, *starred = _chunks(pattern)
    parts = ["".join(head)]
    for number, chunk in enumerate(starred, 1):
        if not chunk and number < len(starred):
            continue  # "**" is one star
        if number == len(starred) or "/" in chunk:
            # The last chunk must end the name, and a "/" pins where a chunk can start:
            # either way this star has one workable length, found by plain backtracking.
            parts.append("[^/]*" + "".join(chunk))
        else:
            parts.append(f"(?>[^/]*?{''.join(chunk)})")
    return "".join(parts)


def _chunks(pattern: str) -> list[list[str]]:
    """The pattern as one-character regexes, cut into chunks where its stars are."""
    chunks: list[list[str]] = [[]]
    i = 0
    while i < len(pattern):
        char = pattern[i]
        i += 1
        if char == "*":
            chunks.append([])
        elif char == "?":
            chunks[-1].append("[^/]")
        elif char == "\\" and i < len(pattern):
            chunks[-1].append(re.escape(pattern[i]))
            i += 1
        elif char == "[":
            bracket, i = _bracket(pattern, i)
            chunks[-1].append(bracket)
        else:
            chunks[-1].append(re.escape(char))
    return chunks


def _bracket(pattern: str, start: int) -> tuple[str, int]:
    """Translate the bracket expression opening just before ``start``.

    Returns the regex and the index after the closing ``]``; an unterminated bracket
    is a literal ``[`` and scanning resumes right after it.
    """
    i = start
    negate = i < len(pattern) and pattern[i] in "!^"
    i += negate
    members: list[str] = []
    first = True
    while i < len(pattern) and (first or pattern[i] != "]"):
        first = False
        char, i = _bracket_char(pattern, i)
        if i + 1 < len(pattern) and pattern[i] == "-" and pattern[i + 1] != "]":
            high, i = _bracket_char(pattern, i + 1)
            members.append(_range(char, high))
        else:
            members.append(re.escape(char))
    if i >= len(pattern):
        return re.escape("["), start
    return _bracket_regex("".join(members), negate), i + 1


def _bracket_regex(body: str, negate: bool) -> str:
    # Under FNM_PATHNAME a bracket expression never matches '/', negated or not.
    if negate:
        return f"[^/{body}]"
    return f"(?!/)[{body}]" if body else "(?!)"  # only inverted ranges: matches nothing


def _bracket_char(pattern: str, i: int) -> tuple[str, int]:
    if pattern[i] == "\\" and i + 1 < len(pattern):
        return pattern[i + 1], i + 2
    return pattern[i], i + 1


def _range(low: str, high: str) -> str:
    if low > high:
        return ""  # an inverted range such as z-a contains nothing
    return f"{re.escape(low)}-{re.escape(high)}"
