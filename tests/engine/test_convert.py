"""``loraloom convert``: the rewritten file applies exactly as the original, and keeps its metadata."""

from __future__ import annotations

import math

import adapter_factory as F
import pytest
import writers as W
from safetensors import safe_open
from safetensors.torch import load_file

from app.cli import main
from app.core.adapters import AdapterLayout, inspect_adapter
from app.core.configs import AdapterEntry
from app.core.families import Family
from app.engine.adapter_convert import convert
from app.engine.adapter_formats import IncompatibleAdapter, LayerIndex
from app.engine.lora_files import modelspec_hash
from app.engine.patching import AdapterMixer
from app.engine.tiny import load_tiny_pipeline


@pytest.fixture(scope="module")
def sources(sd1_pipe, tiny_sd1, tmp_path_factory):
    folder = tmp_path_factory.mktemp("convert-src")
    ref = load_tiny_pipeline(tiny_sd1)
    out = {
        "kohya": F.kohya_lora(
            sd1_pipe, folder / "kohya.safetensors", seed=21, proj=True, convs=True, trigger="ohwx style"
        ),
        "dora": F.dora(sd1_pipe, folder / "dora.safetensors", seed=22),
    }
    for name, kwargs in {
        "loha": dict(algo="loha", sigma=0.3),
        "dora-in": dict(algo="locon", dora_wd=True, wd_on_output=False),
        "dora-out": dict(algo="locon", dora_wd=True, wd_on_output=True),
    }.items():
        written = W.lycoris_file(ref, folder / f"{name}.safetensors", kwargs.pop("algo"), **kwargs)
        written.remove()
        out[name] = written.path
    written = W.peft_file(ref, folder / "peft" / "pytorch_lora_weights.safetensors", alpha=12.0)
    written.remove()
    out["diffusers"] = written.path
    return out


@pytest.fixture
def mixer(sd1_pipe):
    m = AdapterMixer(sd1_pipe, Family.SD1)
    yield m
    m.clear()


def _applied(mixer, pipe, path, weight=0.7):
    report = mixer.set_mix([AdapterEntry(str(path), weight)])
    assert report.refused == [] and report.warnings == []
    return F.weights_of(pipe)


CASES = [(s, t) for s in ("kohya", "dora", "diffusers") for t in ("kohya", "diffusers", "comfy")] + [
    ("loha", "kohya"),
    ("loha", "comfy"),
    ("dora-in", "kohya"),
    ("dora-in", "diffusers"),  # moved to the output axis, the only one peft keeps
    ("kohya", "peft"),
    ("dora", "peft"),
    ("dora-in", "peft"),  # moved to the output axis at new ranks: adapter_config.json must say them
]


@pytest.mark.parametrize(("source", "to"), CASES, ids=[f"{s}-to-{t}" for s, t in CASES])
def test_a_converted_file_applies_like_the_original(sd1_pipe, mixer, sources, tmp_path, source, to):
    src = sources[source]
    out = tmp_path / "out" / f"{source}-{to}.safetensors"
    out.parent.mkdir()
    if to == "peft":  # peft's own layout holds one model: convert the UNet-only part of the original
        src = _unet_only(src, tmp_path / "unet-only.safetensors")
    expected = _applied(mixer, sd1_pipe, src)
    convert(src, out, to, LayerIndex(sd1_pipe), Family.SD1, base_weight=mixer.base_weight)
    layout = inspect_adapter(out).layout.value
    assert layout == to or (layout == "lycoris" and to == "kohya")  # kohya names, LyCORIS tensors
    now = _applied(mixer, sd1_pipe, out)
    worst = max(float((now[k] - expected[k]).abs().max()) for k in now)
    assert worst <= 1e-6
    with safe_open(str(src), "pt") as a, safe_open(str(out), "pt") as b:
        kept = {k: v for k, v in (a.metadata() or {}).items() if k != "lora_adapter_metadata"}
        written = b.metadata()
        assert kept.items() <= written.items()
    assert written["modelspec.hash_sha256"] == modelspec_hash(load_file(str(out)))  # of the copy's own tensors


def _unet_only(src, path):
    from safetensors.torch import save_file

    with safe_open(str(src), "pt") as fh:
        meta = fh.metadata()
    sd = {k: v for k, v in load_file(str(src)).items() if k.startswith("lora_unet_")}
    save_file(sd, str(path), metadata=meta)
    return path


def test_a_lycoris_type_is_not_written_where_the_layout_cannot_hold_it(sd1_pipe, sources, tmp_path):
    src = sources["loha"]
    with pytest.raises(IncompatibleAdapter) as err:
        convert(src, tmp_path / "x.safetensors", "diffusers", LayerIndex(sd1_pipe), Family.SD1)
    assert str(err.value) == (
        f"{src}: a LoHa adapter cannot be written in the diffusers layout "
        "(it holds LoRA and DoRA only); use --to kohya or --to comfy"
    )
    assert not (tmp_path / "x.safetensors").exists()


def test_convert_on_the_command_line(tiny_sd1, sources, tmp_path, capsys):
    out = tmp_path / "comfy.safetensors"
    assert main(["convert", str(sources["kohya"]), str(out), "--to", "comfy", "--base", str(tiny_sd1)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    info = inspect_adapter(out)
    assert info.layout is AdapterLayout.COMFY and info.trigger_words == ["ohwx style"]
    assert (
        main(
            ["convert", str(sources["loha"]), str(tmp_path / "d.safetensors"), "--to", "peft", "--base", str(tiny_sd1)]
        )
        == 1
    )
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(f"loraloom: error: {sources['loha']}: ")


def test_diffusers_loads_a_file_converted_to_its_layout(sd1_pipe, mixer, sources, tiny_sd1, tmp_path):
    import numpy as np

    out = tmp_path / "d" / "pytorch_lora_weights.safetensors"
    out.parent.mkdir()
    convert(sources["kohya"], out, "diffusers", LayerIndex(sd1_pipe), Family.SD1)
    mixer.set_mix([AdapterEntry(str(sources["kohya"]), 1.0)])
    ours = F.render_np(sd1_pipe, steps=2)
    ref = load_tiny_pipeline(tiny_sd1)
    base = F.render_np(ref, steps=2)
    ref.load_lora_weights(str(out.parent), adapter_name="converted")
    theirs = F.render_np(ref, steps=2)
    assert np.abs(theirs - base).max() > 0.01  # the adapter acts in diffusers
    np.testing.assert_allclose(ours, theirs, atol=2e-4)


def _dora_shapes(path) -> set[str]:
    """'out' for a (out, 1[, 1, 1]) dora_scale, 'in' for (1, in[, 1, 1])."""
    with safe_open(str(path), "pt") as fh:
        shapes = [fh.get_slice(k).get_shape() for k in fh.keys() if k.endswith(".dora_scale")]
    assert shapes
    return {"in" if s[0] == 1 else "out" for s in shapes if math.prod(s) > 1}


@pytest.mark.parametrize(("source", "axis"), [("dora-out", "in"), ("dora-in", "out"), ("dora-out", None)])
def test_dora_is_written_on_the_asked_axis_and_its_writer_reads_it_alike(
    sd1_pipe, mixer, sources, tiny_sd1, tmp_path, source, axis
):
    """The file moved to the other axis applies exactly as the original in LoRA Loom (at every weight),
    and lycoris-lora's own DoRA layers of that axis, loaded from it, give the same outputs at weight 1.
    No axis given: the input axis, which A1111 1.10, ComfyUI and LoRA Loom all read the same."""
    src = sources[source]
    expected = {w: _applied(mixer, sd1_pipe, src, w) for w in (1.0, 0.6)}
    out = tmp_path / "moved.safetensors"
    notes: list[str] = []
    index = LayerIndex(sd1_pipe)
    convert(src, out, "kohya", index, Family.SD1, dora_axis=axis, notes=notes, base_weight=mixer.base_weight)
    wanted = axis or "in"
    assert _dora_shapes(out) == {wanted}
    assert len(notes) == 1 and f" DoRA layers moved to the {wanted}put axis: exact at weight 1" in notes[0]
    for w, weights in expected.items():
        now = _applied(mixer, sd1_pipe, out, w)
        worst = max(float((now[k] - weights[k]).abs().max()) for k in now)
        assert worst <= 1e-5, f"weight {w}: {worst}"

    mixer.set_mix([AdapterEntry(str(out), 1.0)])
    inputs = W.fixed_inputs(sd1_pipe)
    ours = W.outputs(sd1_pipe, inputs)
    ref = load_tiny_pipeline(tiny_sd1)
    base = W.outputs(ref, inputs)
    theirs_written = W.lycoris_dora_modules(ref, out, wd_on_out=wanted == "out")
    theirs = W.outputs(ref, inputs)
    theirs_written.remove()
    assert max(W.max_diff(ours, theirs).values()) <= 1e-5
    assert max(W.max_diff(theirs, base).values()) > 1e-3  # the DoRA acts: the comparison can fail


def test_the_same_axis_keeps_the_tensors_and_peft_refuses_the_input_axis(sd1_pipe, mixer, sources, tmp_path):
    src = sources["dora-in"]
    out = tmp_path / "same.safetensors"
    notes: list[str] = []
    convert(src, out, "comfy", LayerIndex(sd1_pipe), Family.SD1, dora_axis="in", notes=notes)
    assert notes == [] and _dora_shapes(out) == {"in"}
    with safe_open(str(src), "pt") as a, safe_open(str(out), "pt") as b:
        assert sorted(a.get_slice(k).get_shape()[0] for k in a.keys() if k.endswith("lora_down.weight")) == sorted(
            b.get_slice(k).get_shape()[0] for k in b.keys() if k.endswith("lora_down.weight")
        )
    with pytest.raises(IncompatibleAdapter) as err:
        convert(src, tmp_path / "p.safetensors", "diffusers", LayerIndex(sd1_pipe), Family.SD1, dora_axis="in")
    assert str(err.value) == (
        f"{src}: the diffusers layout keeps DoRA magnitudes per output row only; "
        "use --dora-axis out, or --to kohya / --to comfy for the input axis"
    )


def test_convert_takes_the_dora_axis_on_the_command_line(tiny_sd1, sources, tmp_path, capsys):
    out = tmp_path / "out.safetensors"
    args = ["convert", str(sources["dora-in"]), str(out), "--to", "kohya", "--base", str(tiny_sd1)]
    assert main([*args, "--dora-axis", "out"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out) and "DoRA layers moved to the output axis" in captured.err
    assert _dora_shapes(out) == {"out"}
