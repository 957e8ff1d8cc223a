"""`python -m mlitb.cli ...`, as `mlitb ...` (used to start local workers and in tests)."""

import sys

from mlitb.cli import main

sys.exit(main())
