"""`python -m mathforge` is the `mathforge` command."""

import sys

from mathforge.cli import main

sys.exit(main())
