# No whitespace between a header name and its colon.
error = 400
