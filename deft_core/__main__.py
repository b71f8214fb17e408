"""Run the deft command line as `python -m deft_core`."""

import sys

from deft_core.cli import main

sys.exit(main())
