# Control characters are refused.
error = 400
