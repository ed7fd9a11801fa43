# HTTP/0.9 style: no protocol token.
error = 400
