"""The frozen app's entry point: the ``loraloom`` command (the GUI when given no arguments)."""

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
