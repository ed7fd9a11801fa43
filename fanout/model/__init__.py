"""Pure models of the streams fanout carries: Ogg pages, MPEG/ADTS frames, ingest.

Nothing here does IO or reads a clock: bytes go in, facts about them come out
(page and frame boundaries, sync points, Ogg header sets). ``ingest.Ingest`` is the
one entry point the source and relay code use; the other modules are its parts.
"""
