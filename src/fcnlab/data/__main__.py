"""``python -m fcnlab.data verify data=<name> paths.data_dir=<dir> [overrides]``: see verify.py."""

import sys

from fcnlab.data.verify import main

if __name__ == "__main__":
    sys.exit(main())
