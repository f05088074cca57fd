"""Real sizes without downloads: full-size skeletons of SD1.5 and SDXL (issue 14).

The skeletons are written once for this module by ``loraloom skeleton`` (fp16 single files in
the original LDM/SGM layout, 2.1 GB and 6.9 GB) and deleted when the module ends,
so 9 GB of files do not sit beside the rest of the suite.
Only what needs real loading loads real tensors; shapes come from the meta device.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from app.core.configs import ModelSpec
from app.core.families import Family
from app.engine.models import ModelError, check_source, checkpoint_info, load_model
from app.engine.single_file import Variant, clip_bpe, config_folder
from app.engine.skeleton import (
    SkeletonError,
    component_shapes,
    parameter_bytes,
    random_tensor,
    write_safetensors_streamed,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def skeleton_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("skeletons")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)  # gigabytes: never left for pytest's keep-3 basetemps


def _skeleton(folder: Path, family: str) -> Path:
    from app.cli import main

    target = folder / f"{family}.safetensors"
    if not target.is_file():
        assert main(["skeleton", str(folder), "--family", family, "--single-file"]) == 0
    return target


@pytest.fixture(scope="module")
def sd15_file(skeleton_dir) -> Path:
    return _skeleton(skeleton_dir, "sd15")


@pytest.fixture(scope="module")
def sdxl_file(skeleton_dir) -> Path:
    return _skeleton(skeleton_dir, "sdxl")


def _assert_weights_are_the_skeletons(pipe, variant: str, every: int = 7) -> None:
    """Every tensor is loaded (none left on meta); a sample holds exactly the written values."""
    for comp in ("unet", "vae", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, comp, None)
        if module is None:
            continue
        state = module.state_dict()
        shapes = component_shapes(variant, comp)
        assert set(shapes) <= set(state), f"{comp}: {sorted(set(shapes) - set(state))[:3]} not loaded"
        assert not [k for k, t in state.items() if t.is_meta]
        for i, (name, shape) in enumerate(shapes.items()):
            if i % every == 0 or ".self_attn." in name and comp == "text_encoder_2" and i % 3 == 0:
                expected = random_tensor(name, shape, torch.float16, 0)
                assert torch.equal(state[name], expected), f"{comp}.{name} differs from the file"


# ---------------------------------------------------------------- offline single-file loading


@pytest.mark.slow
def test_sd15_single_file_loads_offline_and_is_detected(sd15_file):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert check_source(str(sd15_file)).family is Family.SD1
    assert checkpoint_info(sd15_file).variant is Variant.SD15
    loaded = load_model(ModelSpec(base=str(sd15_file), device="cpu", dtype="fp16"))
    assert loaded.family is Family.SD1 and type(loaded.pipe).__name__ == "StableDiffusionPipeline"
    assert len(loaded.pipe.tokenizer) == 49408
    assert loaded.pipe.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    _assert_weights_are_the_skeletons(loaded.pipe, "sd15")


@pytest.mark.slow
def test_sdxl_single_file_loads_offline_and_is_detected(sdxl_file):
    assert check_source(str(sdxl_file)).family is Family.SDXL
    info = checkpoint_info(sdxl_file)
    assert info.variant is Variant.SDXL and not info.refiner and not info.inpainting
    loaded = load_model(ModelSpec(base=str(sdxl_file), device="cpu", dtype="fp16"))
    assert type(loaded.pipe).__name__ == "StableDiffusionXLPipeline"
    assert loaded.pipe.tokenizer_2.pad_token == "!" and loaded.pipe.tokenizer.pad_token == "<|endoftext|>"
    _assert_weights_are_the_skeletons(loaded.pipe, "sdxl")


@pytest.mark.slow
def test_sd21_diffusers_folder_skeleton_loads_offline_as_v_prediction(skeleton_dir):
    from app.cli import main

    folder = skeleton_dir / "sd21"
    assert main(["skeleton", str(folder), "--family", "sd21"]) == 0
    assert check_source(str(folder)).family is Family.SD2
    loaded = load_model(ModelSpec(base=str(folder), device="cpu", dtype="fp16"))
    assert loaded.pipe.scheduler.config.prediction_type == "v_prediction"
    assert loaded.pipe.unet.config.cross_attention_dim == 1024 and loaded.pipe.unet.config.sample_size == 96
    _assert_weights_are_the_skeletons(loaded.pipe, "sd21", every=11)
    del loaded
    shutil.rmtree(folder)


_RSS_SCRIPT = """
import json, resource, sys, torch
from app.core.configs import ModelSpec
from app.engine.models import load_model
import diffusers, transformers  # imported before the baseline: only the model counts
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
pipe = load_model(ModelSpec(base=sys.argv[1], device="cpu", dtype="fp16")).pipe
total = 0.0
for comp in ("unet", "vae", "text_encoder", "text_encoder_2"):
    m = getattr(pipe, comp, None)
    for p in (m.parameters() if m is not None else ()):
        total += float(p.float().sum())  # touch every weight: all of it is resident now
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"added": peak - base, "finite": total == total}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("family", ["sd15", "sdxl"])
def test_loading_a_skeleton_costs_its_parameter_bytes_and_no_second_copy(family, skeleton_dir):
    path = _skeleton(skeleton_dir, family)
    out = subprocess.run(
        [sys.executable, "-c", _RSS_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    weights = parameter_bytes(family, torch.float16)
    assert result["finite"]
    assert result["added"] <= 1.1 * weights, f"loading added {result['added'] / 1e9:.2f} GB for {weights / 1e9:.2f} GB"


# ---------------------------------------------------------------- detection from the header


def _header_only(path: Path, shapes: dict[str, tuple[int, ...]], metadata=None) -> Path:
    entries = [(k, s, torch.float16) for k, s in shapes.items()]
    write_safetensors_streamed(path, entries, lambda i: torch.zeros(entries[i][1], dtype=torch.float16), metadata)
    return path


_UNET = "model.diffusion_model."
_SD2_TE = {"cond_stage_model.model.token_embedding.weight": (4, 2), _UNET + "input_blocks.0.0.weight": (4, 4, 1, 1)}


@pytest.mark.parametrize(
    "shapes, metadata, yaml, variant, inpainting, refiner",
    [
        (
            {"cond_stage_model.transformer.text_model.x": (1,), _UNET + "input_blocks.0.0.weight": (4, 9, 1, 1)},
            None,
            None,
            Variant.SD15,
            True,
            False,
        ),
        (_SD2_TE, None, None, Variant.SD21, False, False),
        (_SD2_TE, {"modelspec.prediction_type": "epsilon"}, None, Variant.SD21_BASE, False, False),
        (_SD2_TE, None, 'model:\n  params:\n    parameterization: "v"\n', Variant.SD21, False, False),
        (_SD2_TE, None, "model:\n  params:\n    linear_start: 0.00085\n", Variant.SD21_BASE, False, False),
        (
            {"conditioner.embedders.0.model.text_projection": (2, 2), _UNET + "x": (1,)},
            None,
            None,
            Variant.SDXL,
            False,
            True,
        ),
    ],
)
def test_variant_comes_from_keys_shapes_metadata_and_the_a1111_yaml(
    tmp_path, shapes, metadata, yaml, variant, inpainting, refiner
):
    path = _header_only(tmp_path / "model.safetensors", shapes, metadata)
    if yaml is not None:
        (tmp_path / "model.yaml").write_text(yaml, encoding="utf-8")
    info = checkpoint_info(path)
    assert (info.variant, info.inpainting, info.refiner) == (variant, inpainting, refiner)


@pytest.mark.parametrize(
    "shapes, kind",
    [
        ({"conditioner.embedders.0.model.text_projection": (2, 2), _UNET + "x": (1,)}, "an SDXL refiner"),
        (
            {"cond_stage_model.transformer.text_model.x": (1,), _UNET + "input_blocks.0.0.weight": (4, 9, 1, 1)},
            "an inpainting sd1 model",
        ),
    ],
)
def test_refiner_and_inpainting_checkpoints_are_refused_in_one_sentence(tmp_path, shapes, kind):
    path = _header_only(tmp_path / "odd.safetensors", shapes)
    with pytest.raises(ModelError) as info:
        load_model(ModelSpec(base=str(path), device="cpu"))
    assert str(info.value) == f"{path}: this checkpoint is {kind}; LoRA Loom loads base text-to-image models"


# ---------------------------------------------------------------- bundled configs, CLI


def test_bundled_configs_have_the_public_sizes():
    """Parameter counts of the real releases (diffusers' from_pretrained reports the same)."""
    counts = {v: parameter_bytes(v, torch.float32) // 4 for v in ("sd15", "sdxl")}
    assert counts["sd15"] == 859_520_964 + 83_653_863 + 123_060_480
    assert counts["sdxl"] == 2_567_463_684 + 83_653_863 + 123_060_480 + 694_659_840
    vocab, merges = clip_bpe()
    assert len(vocab) == 49408 and len(merges) == 48894
    folder = config_folder("sd21")
    assert json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["prediction_type"] == "v_prediction"
    assert (folder / "tokenizer" / "vocab.json").is_file() and config_folder("sd21") == folder


def test_skeleton_cli_refuses_to_overwrite_in_one_sentence(tmp_path, capsys):
    from app.cli import main

    (tmp_path / "sd15.safetensors").write_bytes(b"mine")
    assert main(["skeleton", str(tmp_path), "--family", "sd15", "--single-file"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"loraloom: error: {tmp_path / 'sd15.safetensors'} already exists; "
        "choose another folder or replace it (--overwrite)"
    )
    assert (tmp_path / "sd15.safetensors").read_bytes() == b"mine"
    with pytest.raises(SkeletonError, match="unknown dtype 'fp8'"):
        from app.engine.skeleton import write_skeleton

        write_skeleton(tmp_path / "x", "sd15", dtype="fp8")


# ---------------------------------------------------------------- training and mixing at full size


def _kohya_modules(variant: str, conv: bool) -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    """What kohya sd-scripts' networks.lora makes (``--conv_dim`` when ``conv``): name -> (in, out) shape.

    Written from sd-scripts' rules, not from our trainer: Linear and 1x1 Conv2d layers inside
    every Transformer2DModel (+ ResnetBlock2D/Downsample2D/Upsample2D with ``conv``, 3x3 too),
    and the Linear layers of every CLIPAttention/CLIPMLP.
    """
    from app.engine.skeleton import meta_component

    def scan(model, prefix: str, classes: tuple[str, ...], with_3x3: bool, path_prefix: str = ""):
        out = {}
        for name, module in model.named_modules():
            if type(module).__name__ not in classes:
                continue
            for child_name, child in module.named_modules():
                linear = isinstance(child, torch.nn.Linear)
                conv2d = isinstance(child, torch.nn.Conv2d)
                if linear or (conv2d and (child.kernel_size == (1, 1) or with_3x3)):
                    full = f"{path_prefix}{name}.{child_name}"
                    out[prefix + full.replace(".", "_")] = tuple(child.weight.shape)
        return out

    unet_classes = ("Transformer2DModel",) + (("ResnetBlock2D", "Downsample2D", "Upsample2D") if conv else ())
    modules = scan(meta_component(variant, "unet"), "lora_unet_", unet_classes, conv)
    te = meta_component(variant, "text_encoder")
    te_path = "" if hasattr(te, "text_model") else "text_model."  # files always say text_model.
    modules.update(scan(te, "lora_te_", ("CLIPAttention", "CLIPMLP"), False, te_path))
    return modules


@pytest.mark.slow
def test_a_lora_trained_on_the_sd15_skeleton_has_every_kohya_module(sd15_file, tmp_path):
    from PIL import Image
    from safetensors import safe_open

    from app.core.train_config import TrainConfig
    from app.engine.training.trainer import Trainer

    data = tmp_path / "data" / "1_sks"
    data.mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (64, 64), (200, 40 * i, 30)).save(data / f"{i}.png")
    config = TrainConfig.from_dict(
        {
            "name": "skel",
            "base": str(sd15_file),
            "trigger": "sks",
            "seed": 1,
            "steps": 2,
            "datasets": [{"path": str(data.parent)}],
            "data": {"resolution": 64, "min_bucket": 64, "max_bucket": 64, "min_image_side": 32, "batch_size": 1},
            "network": {"rank": 4, "alpha": 4.0, "targets": "locon", "conv_rank": 2, "train_text_encoder": True},
            "output": {"save_every": 0},
            "sample": {"every": 0, "prompts": []},
        },
        where="test config",
    )
    result = Trainer(config).run()
    assert result.status == "done"

    expected = _kohya_modules("sd15", conv=True)
    assert len(expected) == 192 + 86 + 72  # attention 192, LoCon convs 86, text encoder 72
    with safe_open(str(result.final), "pt") as f:
        shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    assert {k.split(".", 1)[0] for k in shapes} == set(expected)
    for name, weight in expected.items():
        out_ch, in_ch, kernel = weight[0], weight[1], weight[2:]
        rank = 2 if kernel and kernel != (1, 1) else 4
        assert shapes[f"{name}.lora_down.weight"] == (rank, in_ch) + kernel, name
        assert shapes[f"{name}.lora_up.weight"] == (out_ch, rank) + ((1, 1) if kernel else ()), name
        assert shapes[f"{name}.alpha"] == ()


@pytest.mark.slow
def test_mixing_three_loras_on_the_sdxl_skeleton_patches_every_target_layer(sdxl_file, tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    from real_size import write_lora

    from app.core.adapters import Part
    from app.core.configs import AdapterEntry
    from app.engine.adapter_formats import LayerIndex
    from app.engine.patching import AdapterMixer

    loaded = load_model(ModelSpec(base=str(sdxl_file), device="cpu", dtype="fp16"))
    pipe = loaded.pipe
    files = [write_lora(pipe, tmp_path / f"l{i}.safetensors", seed=i, rank=2, convs=False) for i in range(3)]
    index = LayerIndex(pipe)
    mixer = AdapterMixer(pipe, loaded.family, base=str(sdxl_file))
    report = mixer.set_mix([AdapterEntry(path=str(f), weight=0.5) for f in files])
    assert not report.refused and not report.warnings
    targets = set(mixer.index.modules)
    attention = {t for t in targets if t.part is Part.UNET and t.path.endswith(("to_q", "to_k", "to_v", "to_out.0"))}
    assert len(attention) == 70 * 8  # SDXL: 70 transformer blocks, q/k/v/out of attn1 and attn2
    te = {t for t in targets if t.part is not Part.UNET and t.path.endswith(("q_proj", "k_proj", "v_proj", "out_proj"))}
    assert len(te) == 4 * (12 + 32)
    assert attention | te <= mixer.patched_layers()
    assert report.layers_updated == len(mixer.patched_layers())
    for target in sorted(attention | te)[::50]:
        assert not torch.equal(index.modules[target].weight, mixer.base_weight(target)), target
    mixer.clear()
    for target in sorted(attention | te)[::50]:
        assert torch.equal(index.modules[target].weight, mixer.base_weight(target))


@pytest.mark.slow
def test_gpu_check_runs_end_to_end_with_smoke(tmp_path):
    """The GPU script is prepared here: with --smoke (tiny models, CPU) every measurement runs."""
    env = dict(os.environ, LORALOOM_HOME=str(tmp_path / "home"))
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "gpu_check.py"),
            "--smoke",
            "--out",
            str(tmp_path / "o"),
            "--work",
            str(tmp_path / "w"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    result = json.loads((tmp_path / "o" / "gpu_check.json").read_text(encoding="utf-8"))
    assert result["failures"] == [] and result["smoke"] is True
    for family in ("sd15", "sdxl"):
        block = result[family]
        assert block["render_fp32"]["bare_its"] > 0 and block["render_fp32"]["slider_to_picture_s"] > 0
        assert block["train_adamw_gc_on"]["step_s"] > 0 and block["train_adamw_gc_off"]["step_vs_bare_fwd_bwd"] > 0
    assert "sd15 fp32:" in out.stdout and "it/s bare" in out.stdout
    flux = result["flux1"]  # the Flux section: the tiny Flux at 64², 3 kohya LoRAs patched
    assert flux["bare_its"] > 0 and flux["lora3_its"] > 0 and flux["patch_3_s"] > 0 and flux["slider_patch_s"] > 0
    assert "flux1 64²:" in out.stdout
