# A header line needs a colon.
error = 400
