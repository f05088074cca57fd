"""A render whose picture cannot be saved (full disk, read-only folder) fails with one sentence
naming the picture, and leaves no temp file."""

from __future__ import annotations

import errno
import os

import pytest
from PIL import Image

from app.core.errors import ErrorKind
from app.core.files import SaveError
from app.engine.rendering import save_png


@pytest.mark.parametrize("code, kind", [(errno.ENOSPC, ErrorKind.DISK_FULL), (errno.EROFS, ErrorKind.PERMISSION)])
def test_a_picture_that_cannot_be_saved_is_one_sentence(code, kind, tmp_path, monkeypatch):
    from app.worker.loop import describe_error

    def failing_save(self, fp, *args, **kwargs):  # PIL's write, as the OS refuses it
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(Image.Image, "save", failing_save)
    out = tmp_path / "out" / "pic.png"
    with pytest.raises(SaveError) as caught:
        save_png(Image.new("RGB", (8, 8)), out, {"prompt": "x"})
    assert caught.value.kind is kind and caught.value.path == out
    assert str(caught.value).startswith("Disk full while saving " if kind is ErrorKind.DISK_FULL else "Cannot save ")
    assert describe_error(caught.value)["kind"] == kind.value
    assert list(out.parent.iterdir()) == []  # no temp file left behind
