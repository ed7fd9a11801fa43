request = {
    "method": "GET",
    "path": "/admin.cgi",
    "query": (("pass", "hackme"), ("mode", "updinfo"), ("song", "Artist - Title")),
}
