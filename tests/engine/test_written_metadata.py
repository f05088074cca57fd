"""Metadata of the files LoRA Loom writes, as kohya sd-scripts writes it (issue 13, defect 9)."""

from __future__ import annotations

import hashlib
import io

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_save

from app.engine import lora_files


def _kohya_addnet_hashes(tensors, metadata):
    """kohya's train_util.precalculate_safetensors_hashes, addnet_hash_safetensors and addnet_hash_legacy."""
    b = io.BytesIO(safetensors_save(tensors, {k: v for k, v in metadata.items() if k.startswith("ss_")}))
    legacy = hashlib.sha256()
    b.seek(0x100000)
    legacy.update(b.read(0x10000))
    model = hashlib.sha256()
    b.seek(0)
    n = int.from_bytes(b.read(8), "little")
    b.seek(n + 8)
    for chunk in iter(lambda: b.read(1024 * 1024), b""):
        model.update(chunk)
    return model.hexdigest(), legacy.hexdigest()[0:8]


def test_written_files_carry_kohyas_sshs_hashes(tmp_path):
    gen = torch.Generator().manual_seed(0)
    tensors = {
        "lora_unet_x.lora_down.weight": torch.randn(64, 3000, generator=gen),
        "lora_unet_x.lora_up.weight": torch.randn(3000, 64, generator=gen),
        "lora_unet_x.alpha": torch.tensor(32.0),
    }
    metadata = {"ss_network_dim": "64", "ss_network_alpha": "32.0", "modelspec.title": "x"}
    path = lora_files.save_kohya(tmp_path / "x.safetensors", tensors, metadata)
    with safe_open(str(path), "pt") as fh:
        meta = fh.metadata()
    model, legacy = _kohya_addnet_hashes(tensors, metadata)
    assert (meta["sshs_model_hash"], meta["sshs_legacy_hash"]) == (model, legacy)
    assert len(legacy) == 8 and meta["modelspec.title"] == "x"
