"""`python -m fanout`: run the server (see fanout/cli.py)."""
import sys

from fanout.cli import main

if __name__ == "__main__":
    sys.exit(main())
