"""``python -m hsspetsc train ...``: see :mod:`hsspetsc.cli`."""
import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
