# Icecast refuses a fourth field too.
error = 400
