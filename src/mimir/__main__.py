"""``python -m mimir ...`` and ``torchrun ... -m mimir ...``: the ``mimir`` command."""

import sys

from mimir.cli import main

sys.exit(main())
