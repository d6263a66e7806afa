"""``python -m glmmbayes``: the command line (see `glmmbayes.cli`)."""

import sys

from .cli import main

sys.exit(main())
