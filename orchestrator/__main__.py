"""`python -m orchestrator` runs the daemon, exactly like the `acestream-orchestrator` script."""

import sys

from orchestrator.cli import main

sys.exit(main())
