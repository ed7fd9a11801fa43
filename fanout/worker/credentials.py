"""Who a request is, by the server-wide credentials it carries: the admin, or a slave.

A mount's own source credentials and listener authentication are checked where they
apply (`admin.authorize`, `source.py`, `listener_auth.py`); comparing is always
`fanout.protocol.auth.credentials_match` (constant time).
"""
from __future__ import annotations

from fanout.protocol.auth import basic_credentials, credentials_match
from fanout.protocol.http import Request
from fanout.worker.state import Worker


def is_admin(worker: Worker, request: Request) -> bool:
    """Whether the request carries the admin's Basic credentials (no admin-user: never)."""
    auth = worker.cfg.authentication
    return auth.admin_user is not None and credentials_match(
        basic_credentials(request), auth.admin_user, auth.admin_password)


def is_relay_client(worker: Worker, request: Request) -> bool:
    """Whether the request carries the relay-user/relay-password (a slave)."""
    auth = worker.cfg.authentication
    return credentials_match(basic_credentials(request), auth.relay_user, auth.relay_password)
