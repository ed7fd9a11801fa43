# A blank line before any request line.
error = 400
