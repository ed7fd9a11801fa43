# The version is digits.digits.
error = 400
