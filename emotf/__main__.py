"""``python -m emotf``: same as the ``emotf`` command."""

import sys

from .cli import main

sys.exit(main())
