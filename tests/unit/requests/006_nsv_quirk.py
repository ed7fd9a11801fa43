request = {
    "method": "SOURCE",
    "path": "/live.nsv",
    "headers": (
        ("authorization", "Basic c291cmNlOmhhY2ttZQ=="),
        ("content-type", "video/nsv"),
    ),
    "leftover": b"NSVf\x00\x01",
}
