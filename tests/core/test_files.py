"""The one atomic-write helper: durable renames, and a full disk or read-only folder as one sentence."""

from __future__ import annotations

import errno
import os
import stat

import pytest

import app.core.files as files
from app.core.errors import ErrorKind
from app.core.files import SaveError, atomic_write_bytes


def fail_writes(monkeypatch, code: int) -> None:
    """Every write through app.core.files fails as the OS would with ``code`` (no space, read-only ...)."""
    real_fdopen = os.fdopen

    class Failing:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(code, os.strerror(code))

        def __getattr__(self, name):
            return getattr(self.fh, name)

    class FailingOs:
        def __getattr__(self, name):
            return getattr(os, name)

        def fdopen(self, fd, *args, **kwargs):
            return Failing(real_fdopen(fd, *args, **kwargs))

    monkeypatch.setattr(files, "os", FailingOs())


def test_the_folder_is_fsynced_after_the_rename(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync

    def recording_fsync(fd):
        synced.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    atomic_write_bytes(tmp_path / "a.txt", b"hello")
    assert synced == [False, True]  # the file's bytes, then the folder holding the new name
    assert (tmp_path / "a.txt").read_bytes() == b"hello"


def test_a_full_disk_is_one_sentence_and_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "captions.txt"
    target.write_bytes(b"old")
    fail_writes(monkeypatch, errno.ENOSPC)
    with pytest.raises(SaveError) as caught:
        atomic_write_bytes(target, b"x" * 1000)
    assert caught.value.kind is ErrorKind.DISK_FULL
    assert str(caught.value) == f"Disk full while saving {target}: free 0.1 GB and try again"
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["captions.txt"]


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_a_read_only_folder_is_a_permission_error_naming_the_file(code, tmp_path, monkeypatch):
    # Tests run as root, where chmod does not stop writes: the OS error is injected instead.
    target = tmp_path / "out.png"
    fail_writes(monkeypatch, code)
    with pytest.raises(SaveError) as caught:
        atomic_write_bytes(target, b"png")
    assert caught.value.kind is ErrorKind.PERMISSION
    assert str(caught.value) == (
        f"Cannot save {target} ({os.strerror(code)}): the folder is read-only or not "
        "yours; make it writable and try again"
    )
    assert isinstance(caught.value, OSError)  # callers that skip one unwritable file still catch it


def test_other_os_errors_pass_through_unchanged(tmp_path, monkeypatch):
    fail_writes(monkeypatch, errno.EIO)
    with pytest.raises(OSError) as caught:
        atomic_write_bytes(tmp_path / "x", b"1")
    assert not isinstance(caught.value, SaveError) and caught.value.errno == errno.EIO


def test_the_worker_and_the_gui_name_the_new_error_kinds():
    from app.ui.common.errors import describe_error
    from app.ui.jobs import JobError
    from app.worker import protocol as P
    from app.worker.loop import describe_error as worker_describe

    err = worker_describe(SaveError(ErrorKind.DISK_FULL, "/out/x.png", "No space left on device", 2 * 10**9))
    assert err == {
        "kind": "disk_full",
        "message": "Disk full while saving /out/x.png: free 2.2 GB and try again",
        "detail": "",
    }
    assert P.ErrorKind("disk_full") is ErrorKind.DISK_FULL and P.ErrorKind("permission") is ErrorKind.PERMISSION
    shown = describe_error(JobError(kind="disk_full", message=err["message"], detail=""))
    assert shown == "Disk full while saving /out/x.png: free 2.2 GB and try again"
    shown = describe_error(JobError(kind="permission", message="Cannot save /ro/x.png (...)", detail=""))
    assert shown == "Read-only folder: Cannot save /ro/x.png (...)"
