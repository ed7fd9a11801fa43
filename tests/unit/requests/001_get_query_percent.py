request = {
    "method": "GET",
    "target": "/live%20one.mp3?mount=%2Flive&song=A+B%26C&empty=&flag",
    "path": "/live one.mp3",
    "query": (("mount", "/live"), ("song", "A B&C"), ("empty", ""), ("flag", "")),
    "protocol": "HTTP",
    "version": "1.1",
    "headers": (
        ("host", "radio.example.com:8000"),
        ("user-agent", "VLC/3.0.20 LibVLC/3.0.20"),
        ("icy-metadata", "1"),
    ),
    "leftover": b"",
}
