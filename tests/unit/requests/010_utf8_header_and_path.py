# UTF-8 reads as text; other bytes (the Latin-1 genre) survive as surrogate escapes.
request = {
    "target": "/caf\u00e9",
    "path": "/caf\u00e9",
    "headers": (("ice-name", "Radio Z\u00fcrich"), ("ice-genre", "\udce9t\udce9")),
}
