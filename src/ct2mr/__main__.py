"""``python -m ct2mr`` == ``ct2mr``."""

import sys

from ct2mr.cli import main

sys.exit(main())
