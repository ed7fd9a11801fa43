request = {
    "method": "GET",
    "path": "/live.mp3",
    "version": "1.0",
    "headers": (("host", "example.com"), ("icy-metadata", "1")),
    "leftover": b"",
}
