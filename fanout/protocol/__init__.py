"""Sans-IO wire protocol of fanout: bytes in, dataclasses out, renderers return bytes.

Nothing in this package does IO, reads a clock or draws random numbers; callers pass
``now`` (epoch seconds) and anything else that varies. Standard library only.

- ``errors``: ``ProtocolError(message, status)``, the one exception for bad peer input.
- ``http``: incremental request-head parser (``HeadParser``) and request predicates.
- ``auth``: HTTP Basic credentials and their constant-time comparison.
- ``responses``: Icecast-2.4.4-exact response heads (errors, source, listener, admin).
"""
