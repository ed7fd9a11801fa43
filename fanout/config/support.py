"""Which elements fanout implements: the one table (issue 11).

Every element the tag tables accept (``tables.py``) is one of three things:

* **implemented**: fanout acts on it as Icecast 2.4.4 does. That is every row not
  listed below.
* **not implemented yet** (``NOT_YET``): accepted and checked, but not acted on; each
  occurrence in a file is warned about with its XML path (``--check-config`` prints the
  warnings). Some warn only for the values that ask for the missing feature
  (``<chroot>1``, ``<fileserve>1``, an ``<accesslog>`` of ``-``).
* **no effect in Icecast either** (``NO_EFFECT_IN_2_4_4``): accepted silently, because
  2.4.4 reads it and does nothing with it either.

The commit that implements an element removes its ``NOT_YET`` row, so the warning goes
with it (``tests/unit/test_config_support.py`` checks the table against the tag tables
and against Debian's ``icecast.xml``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True, slots=True)
class NotYet:
    """Why an element is not implemented yet; ``only_if`` narrows the warning to the
    values that ask for the feature (None: every occurrence)."""

    reason: str
    only_if: Callable[[Any], bool] | None = None

    def applies(self, value: Any) -> bool:
        return self.only_if is None or bool(self.only_if(value))


def _is_on(value: Any) -> bool:
    return value is True


def _is_stderr(value: Any) -> bool:
    return value == "-"


# Reasons shared by several rows.
_KH = "an Icecast-KH element fanout does not implement"

# Generic element path (no [n]) → why fanout does not act on it yet.
NOT_YET: dict[str, NotYet] = {
    # -- Icecast 2.4.4
    "icecast/logging/accesslog": NotYet("'-' (stderr) is not supported: a file named '-' is written",
                                        _is_stderr),
    "icecast/logging/errorlog": NotYet("'-' (stderr) is not supported: a file named '-' is written",
                                       _is_stderr),
    "icecast/paths/adminroot": NotYet("the admin pages are built in; its XSLT files are not read"),
    # -- outgoing connections
    "icecast/relay/bind": NotYet("relays connect from the address the system picks"),
    # -- Icecast-KH and 2.5
    "icecast/master-bind": NotYet(_KH),
    "icecast/master-relay-auth": NotYet(_KH),
    "icecast/master/bind": NotYet(_KH),
    "icecast/master/relay-auth": NotYet(_KH),
    "icecast/master/retry-delay": NotYet(_KH),
    "icecast/master/run-on": NotYet(_KH),
    "icecast/limits/max-listeners": NotYet(_KH),
    "icecast/limits/max-bandwidth": NotYet(_KH),
    "icecast/limits/min-queue-size": NotYet(_KH),
    "icecast/limits/workers": NotYet(_KH + "; use --workers"),
    "icecast/limits/inactivity-timeout": NotYet(_KH),
    "icecast/mount/max-bandwidth": NotYet(_KH),
    "icecast/paths/mime-types": NotYet("Icecast-KH's place for it; 2.4.4 reads <icecast><mime-types>"),
    "icecast/relay/timeout": NotYet(_KH),
    "icecast/relay/interval": NotYet(_KH),
    "icecast/relay/http-headers": NotYet(_KH),
    "icecast/relay/host/timeout": NotYet(_KH),
    "icecast/relay/host/bind": NotYet(_KH),
    "icecast/relay/host/http-headers": NotYet(_KH),
    "icecast/relay/master/timeout": NotYet(_KH),
    "icecast/relay/master/bind": NotYet(_KH),
    "icecast/relay/master/http-headers": NotYet(_KH),
    "icecast/relay/upstream/bind": NotYet("an Icecast 2.5 element fanout does not implement"),
}

# Generic element path → why accepting it silently is right: 2.4.4 does nothing with it either.
NO_EFFECT_IN_2_4_4: dict[str, str] = {
    "icecast/limits/threadpool": "2.4.4 reads it and starts no pool",
    "icecast/limits/client-timeout": "2.4.4 reads it and never uses it",
    "icecast/paths/basedir": "2.4.4 uses it only for <security><chroot>",
    "icecast/directory/server": "2.4.4 reads <server><host> and never uses it",
    "icecast/http-headers/header/@type": "2.4.4 knows only type=\"static\", the only kind there is",
    "icecast/mount/http-headers/header/@type": "2.4.4 knows only type=\"static\", the only kind there is",
}


def element_status(path: str) -> str:
    """``"not implemented yet"``, ``"no effect in 2.4.4 either"`` or ``"implemented"``
    for a generic element path (one the tag tables accept)."""
    if path in NOT_YET:
        return "not implemented yet"
    if path in NO_EFFECT_IN_2_4_4:
        return "no effect in 2.4.4 either"
    return "implemented"
