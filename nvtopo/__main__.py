"""``python -m nvtopo`` runs the CLI."""

import sys

from nvtopo.cli import main

sys.exit(main())
