"""The one exception the protocol layer raises for bad input from a peer."""

from __future__ import annotations

# Status meaning "close the connection without sending any response": Icecast 2.4.4 does
# that for unusable source paths and protocol tokens (PROTOCOL.md §4.1).
CLOSE_SILENTLY = 0


class ProtocolError(Exception):
    """The peer sent something we refuse.

    ``status`` is the HTTP status to answer with (400, 401, 403, …), or ``CLOSE_SILENTLY``
    (0) when the connection should be closed without a response. The mapping to bytes
    happens in one place, the caller, using ``responses.render_error``.
    """

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"ProtocolError({self.message!r}, {self.status})"
