"""``python -m tests.authx_suite``: run AuthX's own suite without and with authx-epoch and compare."""

import sys

from tests.authx_suite.runner import main

sys.exit(main())
