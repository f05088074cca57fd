"""Loss masks beside dataset pictures: found in order, never scanned as pictures, hostile files told."""

from __future__ import annotations

import pytest
from PIL import Image

from app.core.dataset.masks import MaskError, MaskSource, find_mask, load_mask, mask_problem
from app.core.dataset.problems import ProblemKind
from app.core.dataset.scan import scan_dataset


def test_masks_are_found_sidecar_first_and_are_not_training_pictures(tmp_path):
    Image.new("RGB", (300, 300), (1, 2, 3)).save(tmp_path / "a.png")
    Image.new("RGBA", (300, 300), (1, 2, 3, 0)).save(tmp_path / "b.png")
    (tmp_path / "masks").mkdir()
    Image.new("L", (300, 300), 255).save(tmp_path / "masks" / "a.png")
    assert find_mask(tmp_path / "a.png").source is MaskSource.FOLDER
    Image.new("L", (300, 300), 128).save(tmp_path / "a.mask.png")
    assert find_mask(tmp_path / "a.png").source is MaskSource.SIDECAR
    assert load_mask(find_mask(tmp_path / "a.png"), (300, 300)).getextrema() == (128, 128)
    assert find_mask(tmp_path / "b.png").source is MaskSource.ALPHA  # a transparent picture masks itself
    assert load_mask(find_mask(tmp_path / "b.png"), (300, 300)).getextrema() == (0, 0)
    assert sorted(i.path.name for i in scan_dataset(tmp_path).items) == ["a.png", "b.png"]


def test_a_mask_that_cannot_be_used_is_one_sentence(tmp_path):
    Image.new("RGB", (300, 200), (1, 2, 3)).save(tmp_path / "a.png")
    (tmp_path / "a.mask.png").mkdir()  # a folder where the mask should be
    with pytest.raises(MaskError) as err:
        load_mask(find_mask(tmp_path / "a.png"), (300, 200))
    assert str(err.value) == f"mask {tmp_path / 'a.mask.png'}: a folder, not a regular file; it is not read"
    problem = mask_problem(tmp_path / "a.png", (300, 200))
    assert problem.kind is ProblemKind.MASK_UNUSABLE and not problem.blocking
    assert problem.message.endswith("; the picture trains without a mask")
