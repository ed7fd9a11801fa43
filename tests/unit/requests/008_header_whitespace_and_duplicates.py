request = {
    "path": "/status-json.xsl",
    "headers": (
        ("x-forwarded-for", "10.0.0.1"),
        ("x-forwarded-for", "10.0.0.2"),
        ("host", "example.com"),
        ("empty", ""),
        ("cookie", "a=b; c=d"),
    ),
}
