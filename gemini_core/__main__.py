"""``python -m gemini_core ...``: the CLI (the ``gemini`` console script runs the same ``main``)."""
import sys

from gemini_core.cli import main

sys.exit(main())
