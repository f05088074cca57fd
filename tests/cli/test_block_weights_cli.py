"""``--lora A.safetensors:0.8:lbw=MIDD`` for generate and bake, and ``loraloom inspect FILE --blocks``."""

from __future__ import annotations

import json

import adapter_factory as F
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from app.cli import main
from app.core import block_weights
from app.core.pngmeta import PARAMETERS_KEY

pytestmark = pytest.mark.slow


def _generate(base, out, *loras: str) -> int:
    args = ["generate", "--base", str(base), "--prompt", "a red square", "--seed", "3", "--out", str(out)]
    for lora in loras:
        args += ["--lora", lora]
    return main(args)


def test_generate_takes_block_weights_and_writes_them_as_a1111_does(tiny_sd1, rgb, tmp_path, capsys):
    assert _generate(tiny_sd1, tmp_path / "plain.png", f"{rgb['red']}:0.8") == 0
    assert _generate(tiny_sd1, tmp_path / "midd.png", f"{rgb['red']}:0.8:lbw=MIDD:start=0.25") == 0, (
        capsys.readouterr().err
    )
    with Image.open(tmp_path / "midd.png") as im:
        assert im.text[PARAMETERS_KEY].splitlines()[0] == "a red square <lora:red:0.8:lbw=MIDD:start=0.25>"
        midd = np.asarray(im.convert("RGB"))
    with Image.open(tmp_path / "plain.png") as im:
        assert not np.array_equal(np.asarray(im.convert("RGB")), midd)


def test_a_bad_block_spec_is_one_sentence(tiny_sd1, rgb, tmp_path, capsys):
    code = _generate(tiny_sd1, tmp_path / "x.png", f"{rgb['red']}:0.8:lbw=1,0,1")
    err = capsys.readouterr().err.strip()
    assert code == 1 and not (tmp_path / "x.png").exists()
    assert err == (
        f"loraloom: error: --lora {rgb['red']}:0.8:lbw=1,0,1: block weights '1,0,1': 3 values; "
        "give 12, 17, 20, 26 or 61 values, or a preset name"
    )


def test_bake_takes_block_weights(tiny_sd1, rgb, tmp_path, capsys):
    vector = block_weights.format_vector([1.0 if b == "MID" else 0.0 for b in block_weights.FORMS[26]])
    baked = tmp_path / "mid-only.safetensors"
    code = main(["bake", "--base", str(tiny_sd1), "--lora", f"{rgb['red']}:0.8:lbw={vector}", "--out", str(baked)])
    assert code == 0, capsys.readouterr().err
    keys = {k.removesuffix(".lora_down.weight") for k in load_file(str(baked)) if k.endswith(".lora_down.weight")}
    assert keys and all(block_weights.block_of(k) == "MID" for k in keys)  # every other block was weighted 0


def _dense_norms(path) -> dict[str, float]:
    """‖ΔW‖ per block written out by hand from a kohya file: alpha/rank · up @ down per layer."""
    sd = load_file(str(path))
    squares: dict[str, float] = {}
    for key in sd:
        if not key.endswith(".lora_down.weight"):
            continue
        name = key.removesuffix(".lora_down.weight")
        down, up = sd[key].flatten(1), sd[f"{name}.lora_up.weight"].flatten(1)
        scale = float(sd[f"{name}.alpha"]) / down.shape[0]
        block = block_weights.block_of(name)
        squares[block] = squares.get(block, 0.0) + float(torch.linalg.matrix_norm(scale * up @ down) ** 2)
    return {b: v**0.5 for b, v in squares.items()}


def test_inspect_blocks_prints_the_change_per_block(sd1_pipe, tmp_path, capsys):
    path = F.kohya_lora(sd1_pipe, tmp_path / "locon.safetensors", seed=4, convs=True, sgm=True)
    assert main(["inspect", str(path), "--blocks"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = _dense_norms(path)
    assert list(out["block_norms"]) == [b for b in block_weights.FORMS[26] if b in expected]  # in block order
    for block, norm in expected.items():
        assert out["block_norms"][block] == pytest.approx(norm, rel=1e-4)
    assert "block_norms_need_base" not in out


def test_inspect_blocks_with_a_base_measures_dora_too(tiny_sd1, sd1_pipe, tmp_path, capsys):
    path = F.dora(sd1_pipe, tmp_path / "dora.safetensors", seed=2)
    assert main(["inspect", str(path), "--blocks"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["block_norms_need_base"]  # DoRA's change depends on W0
    assert main(["inspect", str(path), "--blocks", "--base", str(tiny_sd1)]) == 0
    with_base = json.loads(capsys.readouterr().out)
    assert with_base["block_norms"] and all(v > 0 for v in with_base["block_norms"].values())
