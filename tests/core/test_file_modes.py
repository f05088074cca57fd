"""Atomic writes give the result the mode an ordinary open() would: the umask decides."""

from __future__ import annotations

import os
import stat

import pytest
from PIL import Image

from app.core.files import atomic_write_text, temp_path_beside


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_atomic_writes_and_pil_temp_files_follow_the_umask(tmp_path, mask, expected):
    before = os.umask(mask)
    try:
        atomic_write_text(tmp_path / "config.toml", "a = 1\n")
        png = temp_path_beside(tmp_path / "out.png")
        Image.new("RGB", (4, 4)).save(png, format="PNG")  # PIL reopens the path: its mode stays
    finally:
        os.umask(before)
    assert stat.S_IMODE((tmp_path / "config.toml").stat().st_mode) == expected
    assert stat.S_IMODE(png.stat().st_mode) == expected
    assert os.umask(before) == before, "the umask is put back"
