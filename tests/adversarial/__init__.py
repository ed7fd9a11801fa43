"""The threat model, one file per kind of fault: what an attacker or a broken peer does,
and what fanout must answer while every other client goes on (tests/support/bystander.py)."""
