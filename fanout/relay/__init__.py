"""Relaying as the supervisor plans it: the master poller, the configured `<relay>`s and
the pure plan. The pulls themselves run in workers (fanout/worker/relay.py).
"""
