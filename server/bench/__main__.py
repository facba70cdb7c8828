"""``python -m server.bench``: the same as ``parley bench``."""

import sys

from server.bench.command import main

sys.exit(main())
