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


def _kohya_modelspec_hash(tensors):
    """kohya's sai_model_spec.precalculate_safetensors_hashes (each tensor saved alone, in the given order)."""
    digest = hashlib.sha256()
    for tensor in tensors.values():
        b = io.BytesIO(safetensors_save({"tensor": tensor}))
        n = int.from_bytes(b.read(8), "little")
        b.seek(n + 8)
        digest.update(b.read())
    return f"0x{digest.hexdigest()}"


def _trained_metadata(tmp_path, tensors, **network):
    """The header the trainer writes for a run on ``<tmp>/pics/5_ohwx`` (4 pictures) + ``<tmp>/more/ohwx``."""
    from diffusers import DDPMScheduler
    from train_helpers import write_images

    from app.core.families import Family
    from app.core.train_config import TrainConfig
    from app.engine.training.data import collect
    from app.engine.training.setup import adapter_info

    write_images(tmp_path / "pics" / "5_ohwx", caption="ohwx, red", sizes=((64, 64),) * 3 + ((96, 64),))
    write_images(tmp_path / "more" / "5_ohwx", caption="ohwx", sizes=((64, 64),))
    config = TrainConfig.from_dict(
        {
            "name": "mychar",
            "base": "m",
            "trigger": "ohwx",
            "steps": 40,
            "datasets": [{"path": str(tmp_path / "pics")}, {"path": str(tmp_path / "more" / "5_ohwx")}],
            "data": {"resolution": 128, "min_bucket": 64, "max_bucket": 256, "bucket_step": 32, "min_image_side": 32},
            "network": {"rank": 4, "alpha": 2.0, **network},
        }
    )
    scheduler = DDPMScheduler(prediction_type="epsilon")  # the trainer's own kind of noise schedule
    info = adapter_info(config, Family.SD1, scheduler, collect(config), 1.7e9, 40, 3, epochs=4)
    path = lora_files.save_kohya(tmp_path / "a.safetensors", tensors, lora_files.build_metadata(info, tensors))
    with safe_open(str(path), "pt") as fh:
        return fh.metadata()


def test_a_trained_file_carries_kohyas_training_metadata(tmp_path):
    import json

    gen = torch.Generator().manual_seed(1)
    tensors = {
        "lora_unet_x.lora_down.weight": torch.randn(4, 8, generator=gen),
        "lora_unet_x.lora_up.weight": torch.randn(8, 4, generator=gen),
        "lora_unet_x.alpha": torch.tensor(2.0),
    }
    meta = _trained_metadata(tmp_path, tensors, targets="locon", conv_rank=2, conv_alpha=1.0)
    assert json.loads(meta["ss_tag_frequency"]) == {"5_ohwx": {"ohwx": 4, "red": 4}, "5_ohwx (2)": {"ohwx": 1}}
    assert json.loads(meta["ss_dataset_dirs"]) == {
        "5_ohwx": {"n_repeats": 5, "img_count": 4},
        "5_ohwx (2)": {"n_repeats": 5, "img_count": 1},
    }
    assert meta["ss_num_train_images"] == "25"  # with repeats, as kohya counts
    assert (meta["ss_num_epochs"], meta["ss_steps"], meta["ss_epoch"], meta["ss_clip_skip"]) == ("4", "40", "3", "None")
    buckets = json.loads(meta["ss_bucket_info"])
    assert sorted((tuple(b["resolution"]), b["count"]) for b in buckets["buckets"].values()) == [
        ((128, 128), 20),
        ((160, 96), 5),
    ]
    assert buckets["mean_img_ar_error"] >= 0.0
    assert meta["modelspec.title"] == "mychar" and meta["modelspec.trigger_phrase"] == "ohwx"
    assert meta["modelspec.resolution"] == "128x128" and meta["modelspec.prediction_type"] == "epsilon"
    assert len(meta["modelspec.date"]) == 19 and meta["modelspec.date"][10] == "T"
    assert meta["modelspec.hash_sha256"] == _kohya_modelspec_hash(dict(sorted(tensors.items())))
    assert json.loads(meta["ss_network_args"]) == {}  # conv settings, but no conv layer in the file


def test_conv_settings_are_claimed_when_the_file_has_conv_layers(tmp_path):
    import json

    tensors = {
        "lora_unet_c.lora_down.weight": torch.ones(2, 8, 3, 3),
        "lora_unet_c.lora_up.weight": torch.ones(8, 2, 1, 1),
        "lora_unet_c.alpha": torch.tensor(1.0),
    }
    meta = _trained_metadata(tmp_path, tensors, targets="locon", conv_rank=2, conv_alpha=1.0)
    assert json.loads(meta["ss_network_args"]) == {"conv_dim": "2", "conv_alpha": "1.0"}
