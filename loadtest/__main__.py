"""`python -m loadtest` runs the `livesell-loadtest` command."""

import sys

from loadtest.cli import main

# Guarded: generator processes are started with the "spawn" method, which
# imports the parent's main module again.
if __name__ == "__main__":
    sys.exit(main())
