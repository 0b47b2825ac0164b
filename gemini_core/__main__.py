import sys

from gemini_core.cli.main import main

sys.exit(main())
