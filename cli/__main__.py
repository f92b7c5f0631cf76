"""`python -m longanim` and the `longanim` console script."""

import sys

from longanim.commands import main

if __name__ == "__main__":
    sys.exit(main())
