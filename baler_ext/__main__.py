"""``python -m baler_ext`` entry point."""

import sys

from baler_ext.cli import main

sys.exit(main())
