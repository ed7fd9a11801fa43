"""Icecast's htpasswd file: one ``user:<hex MD5 of the password>`` line per user.

Not Apache's format: Icecast 2.4.4 stores the lowercase hex MD5 of the password bytes,
unsalted (what its ``manageauth`` writes and its listener check compares; confirmed
against the real icecast2). Reading, as 2.4.4: lines end at LF (a CR before it is
dropped), empty lines and lines starting with ``#`` are skipped, a line without a colon
is skipped (reported by number), and the user is everything before the *last* colon.
Basic credentials split at the *first* colon, so a user name with a colon can never log
in; ``check_new_user`` refuses such names, and line breaks, which would forge lines.

Pure: bytes in, values out. Reading the file, noticing changes and locking it belong to
the worker (``fanout/worker/listener_auth.py``).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from fanout.protocol.http import TEXT_ENCODING, TEXT_ERRORS

COMMENT = b"#"


@dataclass(frozen=True, slots=True)
class Htpasswd:
    """A parsed file: user → password hash, and the numbers of the lines skipped as bad."""

    users: dict[str, str]
    bad_lines: tuple[int, ...] = ()


def password_hash(password: str) -> str:
    """Return the hash Icecast stores for ``password``: hex MD5 of its bytes, lowercase."""
    return hashlib.md5(password.encode(TEXT_ENCODING, TEXT_ERRORS)).hexdigest()


def parse_htpasswd(data: bytes) -> Htpasswd:
    """Parse a whole file; a user listed twice keeps its last line (2.4.4's tree insert
    keeps the first, but a file edited by appending means the last)."""
    users: dict[str, str] = {}
    bad: list[int] = []
    for number, line in enumerate(data.split(b"\n"), 1):
        line = line.removesuffix(b"\r")
        if not line or line.startswith(COMMENT):
            continue
        user, colon, hashed = line.rpartition(b":")
        if not colon:
            bad.append(number)
            continue
        users[_text(user)] = _text(hashed)
    return Htpasswd(users, tuple(bad))


def password_matches(users: dict[str, str], user: str, password: str) -> bool:
    """Whether ``user`` is listed with the hash of ``password`` (compared in constant time)."""
    stored = users.get(user)
    if stored is None:
        return False
    return hmac.compare_digest(stored.encode(TEXT_ENCODING, TEXT_ERRORS),
                               password_hash(password).encode())


def check_new_user(user: str) -> str | None:
    """Why ``user`` cannot be added (a reason for the log), or None if it can."""
    if not user:
        return "the user name is empty"
    if any(c in user for c in ":\r\n"):
        return "a user name may not contain ':' or line breaks"
    return None


def user_line(user: str, password: str) -> bytes:
    """The line ``manageauth`` appends for a new user (``check_new_user`` it first)."""
    return f"{user}:{password_hash(password)}\n".encode(TEXT_ENCODING, TEXT_ERRORS)


def without_user(data: bytes, user: str) -> bytes:
    """The file with every line of ``user`` removed; comments and other lines kept as they
    are (2.4.4 also drops comments and blank lines when it deletes a user)."""
    kept = [line for line in data.split(b"\n")
            if not _names_user(line.removesuffix(b"\r"), user)]
    return b"\n".join(kept)


def _names_user(line: bytes, user: str) -> bool:
    if not line or line.startswith(COMMENT):
        return False
    name, colon, _ = line.rpartition(b":")
    return bool(colon) and _text(name) == user


def _text(raw: bytes) -> str:
    return raw.decode(TEXT_ENCODING, TEXT_ERRORS)
