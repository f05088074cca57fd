"""NaN / Inf adapters and a picture that becomes NaN, on the tiny SD1 model (issue 10, items 3 and 5).

Before: such an adapter rendered an all-black picture reported as done, and a header
that lied about its types failed the whole render as "internal".
"""

from __future__ import annotations

import json
import struct

import adapter_factory as F
import pytest
import torch
from safetensors.torch import load_file, save_file

from app.core.configs import GenerateRequest
from app.engine.rendering import Renderer, RenderFailed


@pytest.fixture(scope="module")
def renderer():
    return Renderer()


def _request(base, adapters):
    return GenerateRequest.from_dict(
        dict(
            base=str(base), prompt="a red square", seed=5, steps=3, width=64, height=64, guidance=5.0, adapters=adapters
        )
    )


def _spoiled(good, path, change):
    """A copy of the ``good`` adapter with one tensor changed by ``change(name, tensor)``."""
    tensors = load_file(str(good))
    name = sorted(k for k in tensors if k.endswith(".lora_up.weight"))[0]
    tensors[name] = change(tensors[name].clone())
    save_file(tensors, str(path), metadata={"ss_base_model_version": "sd_v1"})
    return path, name.removesuffix(".lora_up.weight")


def _set_first(value):
    def change(t):
        t.view(-1)[0] = value
        return t

    return change


@pytest.mark.parametrize("case", ["nan", "inf", "alpha-inf", "overflow"])
def test_a_non_finite_adapter_is_refused_and_the_rest_renders(case, renderer, tiny_sd1, rgb, tmp_path):
    path = tmp_path / f"{case}.safetensors"
    if case == "alpha-inf":
        tensors = load_file(str(rgb["green"]))
        module = sorted(k for k in tensors if k.endswith(".alpha"))[0].removesuffix(".alpha")
        tensors[f"{module}.alpha"] = torch.tensor(float("inf"))
        save_file(tensors, str(path), metadata={"ss_base_model_version": "sd_v1"})
        words = f"its {module}.alpha is inf, not a finite number; the file is damaged"  # seen in the header
    elif case == "overflow":  # finite factors whose product overflows float32
        path, module = _spoiled(rgb["green"], path, lambda t: t * 0 + 3e38)
        tensors = load_file(str(path))
        tensors[f"{module}.lora_down.weight"] = tensors[f"{module}.lora_down.weight"] * 0 + 3e38
        save_file(tensors, str(path), metadata={"ss_base_model_version": "sd_v1"})
        words = f"layer {module} has weights so large that its change overflows to infinity"
    else:
        path, module = _spoiled(rgb["green"], path, _set_first(float(case)))
        words = f"layer {module} has NaN or infinite weights"
    result = renderer.render(
        _request(tiny_sd1, [{"path": str(path)}, {"path": str(rgb["red"]), "weight": 1.0}]), out_path=tmp_path / "x.png"
    )
    assert [a["name"] for a in result.meta["adapters"]] == ["red"]
    (refused,) = result.meta["adapter_errors"]
    assert refused["path"] == str(path)
    assert refused["message"].startswith(f"{path}: {words}")


def test_an_infinite_alpha_of_any_layer_is_refused(renderer, tiny_sd1, rgb, tmp_path):
    """The header check reads one alpha; the engine checks every layer's when it reads the file."""
    tensors = load_file(str(rgb["green"]))
    module = sorted(k for k in tensors if k.endswith(".alpha"))[-1].removesuffix(".alpha")
    tensors[f"{module}.alpha"] = torch.tensor(float("-inf"))
    path = tmp_path / "last-alpha.safetensors"
    save_file(tensors, str(path), metadata={"ss_base_model_version": "sd_v1"})
    result = renderer.render(_request(tiny_sd1, [{"path": str(path)}]), out_path=tmp_path / "x.png")
    assert result.meta["adapter_errors"][0]["message"] == (
        f"{path}: layer {module} has an alpha of -inf; the file is damaged (it would render a black picture)"
    )


def test_a_header_that_lies_about_types_refuses_only_its_row(renderer, tiny_sd1, rgb, tmp_path):
    """Generate: the bad row is refused with its reason and the others render (it was an 'internal' failure)."""
    raw = rgb["green"].read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    first = sorted(k for k in header if k != "__metadata__")[0]
    header[first]["shape"] = [True] + header[first]["shape"][1:]
    text = json.dumps(header).encode()
    bad = tmp_path / "liar.safetensors"
    bad.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n :])
    result = renderer.render(
        _request(tiny_sd1, [{"path": str(bad)}, {"path": str(rgb["red"]), "weight": 1.0}]), out_path=tmp_path / "x.png"
    )
    assert result.path.is_file() and [a["name"] for a in result.meta["adapters"]] == ["red"]
    assert result.meta["adapter_errors"][0]["message"].startswith(f"{bad}: malformed entry for tensor")


def test_a_picture_that_becomes_nan_fails_the_render_naming_the_step_and_adapter(renderer, tiny_sd1, rgb, tmp_path):
    # Huge but finite factors: the adapter passes the read check (ΔW ~ 1e30 fits float32),
    # and the first UNet step overflows the latents.
    path, module = _spoiled(rgb["green"], tmp_path / "huge.safetensors", lambda t: t * 0 + 1e15)
    tensors = load_file(str(path))
    for key in tensors:
        if key.endswith(".weight"):
            tensors[key] = torch.sign(tensors[key]) * 1e15 + 1e15
    save_file(tensors, str(path), metadata={"ss_base_model_version": "sd_v1", "modelspec.title": "huge"})
    out = tmp_path / "nan.png"
    with pytest.raises(RenderFailed) as info:
        renderer.render(_request(tiny_sd1, [{"path": str(path), "weight": 1.0}]), out_path=out)
    assert str(info.value).startswith("the picture became NaN at step 1 (adapter huge?)")
    assert info.value.kind.value == "incompatible_adapter"
    assert not out.exists()


def test_a_peft_config_that_is_a_fifo_or_infinite_is_not_a_hang_or_a_black_picture(
    renderer, tiny_sd1, sd1_pipe, tmp_path
):
    import os

    (tmp_path / "fifo").mkdir()
    fifo = F.peft_lora(sd1_pipe, tmp_path / "fifo" / "adapter_model.safetensors")
    (tmp_path / "fifo" / "adapter_config.json").unlink()
    os.mkfifo(tmp_path / "fifo" / "adapter_config.json")
    inf = F.peft_lora(sd1_pipe, tmp_path / "inf" / "adapter_model.safetensors")
    (tmp_path / "inf" / "adapter_config.json").write_text('{"r": 4, "lora_alpha": Infinity}')
    result = renderer.render(_request(tiny_sd1, [{"path": str(fifo)}, {"path": str(inf)}]), out_path=tmp_path / "x.png")
    assert [a["path"] for a in result.meta["adapters"]] == [str(fifo)]  # read without its config (scale 1)
    (refused,) = result.meta["adapter_errors"]
    assert refused["path"] == str(inf) and "has an alpha of inf" in refused["message"]
