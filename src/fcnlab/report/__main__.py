"""``python -m fcnlab.report``: see :mod:`fcnlab.report.cli`."""

import sys

from fcnlab.report.cli import main

if __name__ == "__main__":
    sys.exit(main())
