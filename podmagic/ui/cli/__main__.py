"""`python -m podmagic.ui.cli`: the `podmagic` command."""

import sys

from podmagic.ui.cli import main

sys.exit(main())
