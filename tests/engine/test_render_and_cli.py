"""The Renderer with an adapter stack, the PNG parameters round trip, and the CLI (generate --lora, bake, inspect)."""

from __future__ import annotations

import json

import adapter_factory as F
import numpy as np
import pytest
from PIL import Image

from app.cli import main
from app.core.configs import GenerateRequest
from app.core.pngmeta import PARAMETERS_KEY, format_parameters, lora_tag, parse_lora_tags, parse_parameters
from app.engine.rendering import Renderer


def test_lora_tags_round_trip():
    meta = {
        "prompt": "a red cat",
        "negative": "blurry",
        "steps": 4,
        "scheduler": "Euler",
        "guidance": 5.0,
        "seed": 3,
        "width": 64,
        "height": 64,
        "model": "tiny",
        "adapters": [
            {"name": "red", "weight": 0.8, "te_weight": 0.8},
            {"name": "blue style", "weight": -0.3, "te_weight": 0.5},
        ],
    }
    text = format_parameters(meta)
    assert text.splitlines()[0] == "a red cat <lora:red:0.8> <lora:blue style:te=0.5:unet=-0.3>"
    back = parse_parameters(text)
    assert back["prompt"] == "a red cat"
    assert back["adapters"] == [
        {"name": "red", "weight": 0.8, "te_weight": None},
        {"name": "blue style", "weight": -0.3, "te_weight": 0.5},
    ]
    # A1111's positional form: the first number is the text encoder's, the second the UNet's.
    assert parse_lora_tags("x <lora:a:0.5:1>")[1] == [{"name": "a", "weight": 1.0, "te_weight": 0.5}]
    assert lora_tag("a", 1.0) == "<lora:a:1>"


@pytest.fixture(scope="module")
def renderer():
    return Renderer()


def _request(base, adapters, **kw):
    values = dict(
        base=str(base), prompt="a red square", seed=5, steps=3, width=64, height=64, guidance=5.0, adapters=adapters
    )
    values.update(kw)
    return GenerateRequest.from_dict(values)


def test_renderer_applies_the_stack_and_writes_lora_tags(renderer, tiny_sd1, rgb, tmp_path):
    base = renderer.render(_request(tiny_sd1, []), out_path=tmp_path / "base.png")
    zero = renderer.render(
        _request(tiny_sd1, [{"path": str(rgb["red"]), "weight": 0.0}]), out_path=tmp_path / "zero.png"
    )
    mixed = renderer.render(
        _request(
            tiny_sd1,
            [{"path": str(rgb["red"]), "weight": 1.5}, {"path": str(rgb["blue"]), "weight": -0.5, "enabled": False}],
        ),
        out_path=tmp_path / "mixed.png",
    )
    pixels = {p: np.asarray(Image.open(tmp_path / f"{p}.png")) for p in ("base", "zero", "mixed")}
    assert np.array_equal(pixels["base"], pixels["zero"])
    assert np.abs(pixels["mixed"].astype(int) - pixels["base"]).max() > 5
    (used,) = mixed.meta["adapters"]  # with the load report's layer count (every layer of red applies)
    layers = used.pop("layers")
    assert set(used.pop("block_norms")) == {"BASE", "IN01", "MID", "OUT02", "OUT03"}  # where red acts (issue 16)
    assert used == {"name": "red", "path": str(rgb["red"]), "weight": 1.5, "te_weight": 1.5, "load_details": ""}
    assert layers.endswith(" layers") and layers.split()[0].split("/")[0] == layers.split()[0].split("/")[1]
    text = Image.open(mixed.path).text[PARAMETERS_KEY]
    assert text.splitlines()[0] == "a red square <lora:red:1.5>"
    assert parse_parameters(text)["adapters"] == [{"name": "red", "weight": 1.5, "te_weight": None}]
    assert base.meta["adapters"] == [] and zero.meta["adapters"][0]["weight"] == 0.0


def test_renderer_skips_and_reports_a_refused_adapter(renderer, tiny_sd1, rgb, tmp_path):
    bad = F.not_a_lora(tmp_path / "ckpt.safetensors")
    result = renderer.render(
        _request(tiny_sd1, [{"path": str(bad)}, {"path": str(rgb["green"]), "weight": 1.0}]),
        out_path=tmp_path / "x.png",
    )
    assert [a["name"] for a in result.meta["adapters"]] == ["green"]
    assert result.meta["adapter_errors"][0]["message"].startswith(f"{bad}: not a LoRA adapter")


def test_cli_inspect_prints_json(rgb, capsys):
    assert main(["inspect", str(rgb["red"])]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layout"] == "kohya" and info["family"] == "sd1" and info["rank"] == 4 and info["alpha"] == 2.0
    assert info["trigger_words"] == ["red style"] and info["parts"] == ["unet", "text_encoder"]


def test_cli_inspect_refuses_a_pickle(tmp_path, capsys):
    path = tmp_path / "old.pt"
    path.write_bytes(b"\x80\x04K\x01.")
    assert main(["inspect", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"loraloom: error: {path}: pickle files") and "\n" not in err


def test_cli_generate_with_loras_and_bake(tiny_sd1, rgb, tmp_path, capsys):
    out = tmp_path / "g.png"
    bad = tmp_path / "legacy.ckpt"
    bad.write_bytes(b"not really")
    code = main(
        [
            "generate",
            "--base",
            str(tiny_sd1),
            "--prompt",
            "a red square",
            "--seed",
            "3",
            "--out",
            str(out),
            "--lora",
            f"{rgb['red']}:0.8",
            "--lora",
            f"{rgb['blue']}:-0.3:0.5",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    first_line = Image.open(out).text[PARAMETERS_KEY].splitlines()[0]
    assert first_line == "a red square <lora:red:0.8> <lora:blue:te=0.5:unet=-0.3>"

    baked = tmp_path / "mix.safetensors"
    code = main(
        [
            "bake",
            "--base",
            str(tiny_sd1),
            "--lora",
            f"{rgb['red']}:0.8",
            "--lora",
            f"{rgb['blue']}:-0.3",
            "--out",
            str(baked),
            "--rank",
            "3",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert captured.out.strip() == str(baked) and "relative error" in captured.err and baked.is_file()

    code = main(["bake", "--base", str(tiny_sd1), "--lora", f"{bad}:1", "--out", str(tmp_path / "no.safetensors")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith(f"loraloom: error: {bad}: pickle files") and "\n" not in err


@pytest.mark.parametrize("case", ["bad weight", "missing", "not a lora", "wrong base"])
def test_cli_generate_refuses_an_adapter_it_cannot_use_in_one_line(case, tiny_sd1, tiny_sdxl, rgb, tmp_path, capsys):
    """A CLI picture rendered without an adapter the user asked for would be silently wrong."""
    out = tmp_path / "g.png"
    lora, base, expected = {
        "bad weight": (
            f"{rgb['red']}:abc",
            tiny_sd1,
            f"--lora {rgb['red']}:abc: 'abc' is not a weight; write PATH:WEIGHT with a number, e.g. {rgb['red']}:0.8",
        ),
        "missing": (str(tmp_path / "missing.safetensors"), tiny_sd1, f"{tmp_path / 'missing.safetensors'}: "),
        "not a lora": (str(F.not_a_lora(tmp_path / "legacy.ckpt")), tiny_sd1, f"{tmp_path / 'legacy.ckpt'}: "),
        "wrong base": (str(rgb["red"]), tiny_sdxl, f"{rgb['red']}: "),
    }[case]
    code = main(["generate", "--base", str(base), "--prompt", "a red square", "--out", str(out), "--lora", lora])
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("loraloom:")]
    assert code == 1 and not out.exists()
    assert len(errors) == 1 and errors[0].startswith(f"loraloom: error: {expected}"), err
    assert "Traceback" not in "\n".join(err)
