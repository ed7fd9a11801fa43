# Not "METHOD target PROTOCOL/version".
error = 400
