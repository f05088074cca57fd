"""Base-model loading, family detection and rendering on the tiny models."""

from __future__ import annotations

import json
import shutil
import struct

import pytest
import torch
from PIL import Image

from app.core.configs import DevicePref, DtypePref, GenerateRequest, ModelSpec, Scheduler
from app.core.errors import ErrorKind
from app.core.families import Family
from app.engine.models import (
    ModelError,
    check_source,
    family_from_checkpoint,
    family_from_folder,
    load_model,
    pick_device,
    pick_dtype,
)
from app.engine.rendering import RenderCancelled, Renderer


def _checkpoint(path, names):
    header = {n: {"dtype": "F32", "shape": [1], "data_offsets": [4 * i, 4 * i + 4]} for i, n in enumerate(names)}
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * (4 * len(names)))
    return path


def test_family_of_tiny_folders(tiny_sd1, tiny_sdxl):
    assert family_from_folder(tiny_sd1) is Family.SD1
    assert family_from_folder(tiny_sdxl) is Family.SDXL


def test_family_from_text_encoder_width(tmp_path, tiny_sd1):
    folder = tmp_path / "sd2ish"
    shutil.copytree(tiny_sd1, folder)
    cfg = json.loads((folder / "text_encoder" / "config.json").read_text())
    cfg["hidden_size"] = 1024
    (folder / "text_encoder" / "config.json").write_text(json.dumps(cfg))
    assert family_from_folder(folder) is Family.SD2


def test_unsupported_family_is_named(tmp_path):
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "PixArtAlphaPipeline"}))
    with pytest.raises(ModelError, match="unsupported model family \\(PixArtAlphaPipeline\\)"):
        family_from_folder(tmp_path)
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    assert family_from_folder(tmp_path).value == "flux1"  # a family since issue 15


@pytest.mark.parametrize(
    "names, family",
    [
        (["model.diffusion_model.x", "cond_stage_model.transformer.text_model.y"], Family.SD1),
        (["model.diffusion_model.x", "cond_stage_model.model.transformer.y"], Family.SD2),
        (["model.diffusion_model.x", "conditioner.embedders.0.t", "conditioner.embedders.1.model.y"], Family.SDXL),
    ],
)
def test_family_of_single_file_checkpoints(tmp_path, names, family):
    assert family_from_checkpoint(_checkpoint(tmp_path / "m.safetensors", names)) is family


def test_a_lora_given_as_base_model_is_explained(tmp_path):
    lora = _checkpoint(tmp_path / "style.safetensors", ["lora_unet_down_blocks_0_x.lora_down.weight"])
    with pytest.raises(ModelError, match="LoRA adapter, not a base model"):
        check_source(str(lora))


@pytest.mark.parametrize(
    "make, kind, needle",
    [
        (lambda p: p / "missing", ErrorKind.MODEL_NOT_FOUND, "no such file or folder"),
        (lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt", ErrorKind.BAD_INPUT, "not a model"),
        (lambda p: p, ErrorKind.BAD_INPUT, "no model_index.json"),
    ],
)
def test_bad_sources_name_the_path(tmp_path, make, kind, needle):
    target = make(tmp_path)
    with pytest.raises(ModelError, match=needle) as info:
        check_source(str(target))
    assert info.value.kind is kind
    assert str(target) in str(info.value)


def test_unknown_repo_offline_is_explained(monkeypatch):
    with pytest.raises(ModelError) as info:
        load_model(ModelSpec(base="nobody-here/no-such-model-xyz"))
    assert info.value.kind is ErrorKind.MODEL_NOT_FOUND
    assert "nobody-here/no-such-model-xyz" in str(info.value)


def test_damaged_folder_is_reported(tmp_path, tiny_sd1):
    folder = tmp_path / "damaged"
    shutil.copytree(tiny_sd1, folder)
    shutil.rmtree(folder / "unet")
    with pytest.raises(ModelError, match="incomplete or damaged") as info:
        load_model(ModelSpec(base=str(folder)))
    assert str(folder) in str(info.value)


def test_device_and_dtype_choice():
    assert pick_device(DevicePref.AUTO).type == ("cuda" if torch.cuda.is_available() else pick_device().type)
    assert pick_dtype(DtypePref.AUTO, torch.device("cpu")) is torch.float32
    assert pick_dtype(DtypePref.BF16, torch.device("cpu")) is torch.bfloat16
    if not torch.cuda.is_available():
        with pytest.raises(ModelError, match="no CUDA GPU"):
            pick_device(DevicePref.CUDA)


def test_load_reports_what_it_holds(tiny_sd1):
    loaded = load_model(ModelSpec(base=str(tiny_sd1), dtype=DtypePref.FP32))
    assert loaded.describe()["family"] == "sd1"
    assert loaded.describe()["device"] == "cpu"
    assert loaded.pipe.unet.dtype == torch.float32


def _req(base, **kw) -> GenerateRequest:
    values = dict(base=str(base), prompt="a red cat", width=64, height=64, steps=3, seed=11)
    values.update(kw)
    return GenerateRequest(**values)


def test_renderer_keeps_the_model_and_is_reproducible(tiny_sd1, tmp_path):
    r = Renderer()
    a = r.render(_req(tiny_sd1), out_path=tmp_path / "a.png")
    held = r.loaded
    b = r.render(_req(tiny_sd1), out_path=tmp_path / "b.png")
    assert r.loaded is held  # no reload for the same base
    with Image.open(a.path) as ia, Image.open(b.path) as ib:
        assert ia.size == (64, 64) and ia.tobytes() == ib.tobytes()
    c = r.render(_req(tiny_sd1, seed=12), out_path=tmp_path / "c.png")
    with Image.open(a.path) as ia, Image.open(c.path) as ic:
        assert ia.tobytes() != ic.tobytes()

    # A bad path does not drop the model we hold.
    with pytest.raises(ModelError):
        r.render(_req(tmp_path / "nope"))
    assert r.loaded is held


@pytest.mark.parametrize("scheduler", list(Scheduler))
def test_every_scheduler_renders(tiny_sd1, tmp_path, scheduler):
    result = Renderer().render(_req(tiny_sd1, scheduler=scheduler, steps=4), out_path=tmp_path / "s.png")
    with Image.open(result.path) as im:
        assert im.size == (64, 64)
        assert f"Sampler: {scheduler.value}" in im.text["parameters"]


def test_sdxl_renders(tiny_sdxl, tmp_path):
    result = Renderer().render(_req(tiny_sdxl, width=64, height=64), out_path=tmp_path / "x.png")
    assert result.meta["family"] == "sdxl"
    with Image.open(result.path) as im:
        assert im.size == (64, 64)


def test_cancel_between_steps_writes_nothing(tiny_sd1, tmp_path):
    seen = []
    with pytest.raises(RenderCancelled):
        Renderer().render(
            _req(tiny_sd1, steps=50),
            out_path=tmp_path / "never.png",
            on_step=lambda step, total, eta: seen.append(step),
            should_cancel=lambda: len(seen) >= 2,
        )
    assert seen == [1, 2]
    assert list(tmp_path.iterdir()) == []
