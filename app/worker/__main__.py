"""``python -m app.worker``: the process that owns the GPU. See app/worker/loop.py."""

import sys

from app.worker.loop import main

if __name__ == "__main__":
    sys.exit(main())
