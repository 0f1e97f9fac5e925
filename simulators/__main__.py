"""``python -m simulators --config DIR --workdir W [--speed S] ...``: see :mod:`simulators.launcher`."""

import sys

from simulators.launcher import main

if __name__ == "__main__":
    sys.exit(main())
