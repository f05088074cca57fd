"""Fixtures for the dataset tests: tiny offline captioning models, built once per session."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def tiny_blip(tmp_path_factory) -> Path:
    """A random BLIP saved with save_pretrained (the Salesforce/blip-image-captioning-* layout)."""
    from app.engine.captioning.tiny import write_tiny_blip

    return write_tiny_blip(tmp_path_factory.mktemp("captioners") / "tiny-blip")


@pytest.fixture(scope="session")
def tiny_wd(tmp_path_factory) -> Path:
    """model.onnx exported from a small torch model + selected_tags.csv (the wd-vit-tagger-v3 layout)."""
    from app.engine.captioning.tiny import write_tiny_wd_tagger

    return write_tiny_wd_tagger(tmp_path_factory.mktemp("captioners") / "tiny-wd")


@pytest.fixture(scope="session")
def tiny_florence(tmp_path_factory) -> Path:
    """A random Florence-2 in transformers' native layout (florence-community/Florence-2-*)."""
    from app.engine.captioning.tiny import write_tiny_florence

    return write_tiny_florence(tmp_path_factory.mktemp("captioners") / "tiny-florence")
