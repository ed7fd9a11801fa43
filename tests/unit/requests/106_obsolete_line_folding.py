# Folded header lines are refused (RFC 9112 allows it).
error = 400
