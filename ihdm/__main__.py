"""``python -m ihdm``: the same as the ``ihdm`` command."""

import sys

from .cli import main

sys.exit(main())
