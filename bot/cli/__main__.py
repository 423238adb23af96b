"""`python -m bot.cli` runs the `adapt-bot` console script."""

import sys

from bot.cli import main

sys.exit(main())
