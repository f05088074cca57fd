"""``python -m app`` starts the GUI (the CLI is ``loraloom``)."""

import sys

from app.ui.app import run_gui

if __name__ == "__main__":
    sys.exit(run_gui())
