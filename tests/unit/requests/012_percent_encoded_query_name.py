request = {
    "path": "/admin/metadata",
    "query": (("mount", "/live.mp3"), ("mode", "updinfo"), ("song", "\u00c9t\u00e9=1"), ("charset", "UTF-8")),
}
