# The protocol token is case-sensitive, as in Icecast.
error = 400
