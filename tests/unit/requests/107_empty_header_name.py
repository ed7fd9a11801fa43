# A header needs a name.
error = 400
