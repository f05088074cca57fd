"""The worker process (``python -m app.worker``) and its protocol.

Only :mod:`app.worker.protocol` may be imported by the GUI; the process loop imports
the engine (torch) and lives in :mod:`app.worker.__main__` / :mod:`app.worker.loop`.
"""
