# Only HTTP, ICE and ICY are spoken.
error = 400
