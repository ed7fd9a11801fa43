request = {
    "method": "PUT",
    "path": "/live.ogg",
    "protocol": "HTTP",
    "version": "1.1",
    "headers": (
        ("host", "localhost:8000"),
        ("authorization", "Basic c291cmNlOmhhY2ttZQ=="),
        ("expect", "100-continue"),
        ("content-type", "application/ogg"),
    ),
    "leftover": b"",
}
