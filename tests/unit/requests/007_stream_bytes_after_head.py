# Only the first blank line ends the head; stream bytes that look like heads are data.
request = {
    "method": "SOURCE",
    "headers": (("content-type", "audio/mpeg"),),
    "leftover": b"\xff\xfb\x90\x64\r\n\r\n\n\nGET / HTTP/1.0\r\n\r\n\x00",
}
