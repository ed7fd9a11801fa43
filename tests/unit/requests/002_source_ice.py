request = {
    "method": "SOURCE",
    "target": "/live",
    "path": "/live",
    "query": (),
    "protocol": "ICE",
    "version": "1.0",
    "headers": (
        ("ice-password", "hackme"),
        ("content-type", "audio/mpeg"),
        ("ice-name", "Old Shout Source"),
        ("ice-bitrate", "128"),
    ),
    "leftover": b"",
}
