"""Master–slave relaying: the poller and the relay pulls the supervisor runs (gevent)."""
