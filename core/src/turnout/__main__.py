"""``python -m turnout`` is the ``turnout`` command."""

import sys

from .cli import main

sys.exit(main())
