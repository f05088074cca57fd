"""The Qt GUI. Imports ``app.core`` and ``app.worker.protocol`` only, never the engine."""
