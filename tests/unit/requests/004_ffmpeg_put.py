# ffmpeg's icecast:// PUT: header order from libavformat http.c (defaults, then the
# icecast muxer's Ice-* headers, then auth), values as in the WIRE.md lab run.
request = {
    "method": "PUT",
    "target": "/live.mp3",
    "path": "/live.mp3",
    "query": (),
    "protocol": "HTTP",
    "version": "1.1",
    "headers": (
        ("user-agent", "Lavf/60.16.100"),
        ("accept", "*/*"),
        ("expect", "100-continue"),
        ("connection", "close"),
        ("host", "localhost:18000"),
        ("content-type", "audio/mpeg"),
        ("icy-metadata", "1"),
        ("ice-name", "lab /live.mp3"),
        ("ice-description", "interop lab"),
        ("ice-genre", "lab"),
        ("ice-public", "1"),
        ("authorization", "Basic c291cmNlOmhhY2ttZQ=="),
    ),
    "leftover": b"",
}
