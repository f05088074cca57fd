"""Disk faults for tests: atomic writes (app.core.files) of chosen files fail as the OS would."""

from __future__ import annotations

import os

import app.core.files as files


def fail_writes_of(monkeypatch, code: int, name_part: str) -> None:
    """Atomic writes of files whose name contains ``name_part`` fail with ``code`` (ENOSPC, EROFS ...)."""
    real_mkstemp = files.tempfile.mkstemp

    class FailingTempfile:
        def __getattr__(self, name):
            return getattr(files.tempfile, name)

        @staticmethod
        def mkstemp(*args, prefix="", **kwargs):
            if name_part in prefix:
                raise OSError(code, os.strerror(code))
            return real_mkstemp(*args, prefix=prefix, **kwargs)

    monkeypatch.setattr(files, "tempfile", FailingTempfile())
