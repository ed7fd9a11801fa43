"""fanout: an Icecast-2-compatible streaming server for high-load edge nodes."""

__version__ = "0.1.0"
