"""`python -m server` runs the `livesell` command."""

import sys

from server.web.cli import main

sys.exit(main())
