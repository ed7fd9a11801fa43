# A lone CR does not end a line here; it is a control character.
error = 400
