# Leading whitespace: no method.
error = 400
