"""`python -m podmagic.ui.cli`: the `podmagic` command."""

import sys

from podmagic.ui.cli import main

if __name__ == "__main__":
    sys.exit(main())
