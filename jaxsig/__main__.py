"""``python -m jaxsig``: the jaxsig command (see :mod:`jaxsig.cli`)."""

import sys

from jaxsig.app.cli import main

if __name__ == "__main__":
    sys.exit(main())
