"""`python -m server` runs the `livesell` command."""

import sys

from server.cli import main

sys.exit(main())
