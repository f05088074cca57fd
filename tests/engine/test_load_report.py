"""The load report: what of a file applied, what was left out and why; never silent."""

from __future__ import annotations

import json

import adapter_factory as F
import torch
from safetensors.torch import load_file, save_file

from app.cli import main
from app.core.families import Family
from app.engine.adapter_formats import LayerIndex, read_adapter


def _with_extras(source, path):
    """A real kohya file plus a layer of roles no reader knows, a stray role and a layer not in the model."""
    from safetensors import safe_open

    with safe_open(str(source), "pt") as fh:
        meta = fh.metadata()
    sd = load_file(str(source))
    sd["lora_unet_down_blocks_0_resnets_0_norm1.gate_up"] = torch.ones(32)
    sd["lora_unet_down_blocks_0_resnets_0_norm1.gate_down"] = torch.zeros(32)
    key = "lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q"
    sd[f"{key}.reshape_weight"] = torch.zeros(2)
    sd["lora_unet_no_such_layer.lora_down.weight"] = torch.zeros(4, 8)
    sd["lora_unet_no_such_layer.lora_up.weight"] = torch.zeros(8, 4)
    save_file(sd, str(path), metadata=meta)
    return path, len(sd)


def test_a_complete_file_reports_every_layer_applied(sd1_pipe, rgb):
    parsed = read_adapter(rgb["red"], LayerIndex(sd1_pipe), Family.SD1)
    report = parsed.report
    n = len(parsed.layers)
    assert report.complete and report.badge() == f"{n}/{n} layers" and report.warning() == ""
    assert report.tensors_used == report.tensors_total == 3 * n
    assert report.lines()[-1] == "family: SD 1.x (metadata ss_base_model_version = sd_v1)"


def test_ignored_tensors_and_skipped_layers_are_named(sd1_pipe, rgb, tmp_path):
    path, total = _with_extras(rgb["green"], tmp_path / "extras.safetensors")
    parsed = read_adapter(path, LayerIndex(sd1_pipe), Family.SD1)
    report = parsed.report
    n = len(parsed.layers)
    assert not report.complete
    assert report.badge() == f"{n}/{n + 2} layers"
    assert report.tensors_total == total and report.tensors_used == total - 5
    assert report.ignored == {"reshape_weight": 1}
    assert dict(report.skipped) == {
        "lora_unet_down_blocks_0_resnets_0_norm1": "no weights LoRA Loom can apply (.gate_down, .gate_up)",
        "lora_unet_no_such_layer": "not in the base model",
    }
    assert report.warning() == (
        f"extras.safetensors: 2 of its {n + 2} layers were skipped and 1 tensors were ignored (.reshape_weight)"
    )
    assert (
        "extras.safetensors: 3 tensors of kinds LoRA Loom cannot apply were ignored "
        "(.gate_down, .gate_up, .reshape_weight)" in parsed.warnings
    )


def test_inspect_with_a_base_prints_the_load_report(tiny_sd1, sd1_pipe, rgb, tmp_path, capsys):
    path, _ = _with_extras(rgb["green"], tmp_path / "extras.safetensors")
    assert main(["inspect", str(path), "--base", str(tiny_sd1), "--device", "cpu"]) == 0
    out = json.loads(capsys.readouterr().out)
    report = out["load_report"]
    assert report["complete"] is False and report["ignored"] == {"reshape_weight": 1}
    assert report["lines"][2] == "ignored tensors: .reshape_weight ×1"
    assert out["family"] == "sd1"


def test_inspect_with_a_base_refuses_a_wrong_base_in_one_sentence(tiny_sd1, sdxl_pipe, tmp_path, capsys):
    xl = F.kohya_lora(sdxl_pipe, tmp_path / "xl.safetensors", family="sdxl")
    assert main(["inspect", str(xl), "--base", str(tiny_sd1), "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (f"loraloom: error: {xl}: made for SDXL, but the base model is SD 1.x; pick a SDXL base model for it")


def test_the_generate_row_shows_the_layer_count_and_a_warning_with_the_details(qtbot, rgb, tmp_path):
    from app.ui.generate.adapter_rows import AdapterRowWidget
    from app.ui.generate.adapter_stack import AdapterStack

    stack = AdapterStack()
    stack.add(str(rgb["red"]))
    stack.add(str(tmp_path / "partial.safetensors"))
    assert stack.wait()
    full, partial = AdapterRowWidget(stack, 0), AdapterRowWidget(stack, 1)
    qtbot.addWidget(full)
    qtbot.addWidget(partial)
    assert full.layers_badge.isHidden()  # nothing rendered yet: no report to show
    details = "layers: 80 of 92 applied\nskipped 12 layers (not in the base model), e.g. lora_unet_x"
    stack.mark_applied(
        [
            {"path": str(rgb["red"]), "layers": "92/92 layers", "load_details": ""},
            {"path": str(tmp_path / "partial.safetensors"), "layers": "80/92 layers", "load_details": details},
        ]
    )
    full.refresh()
    partial.refresh()
    assert full.layers_badge.text() == "92/92 layers" and not full.layers_badge.isHidden()
    assert full.layers_badge.toolTip() == "Every layer and tensor of the file is applied."
    assert partial.layers_badge.text() == "⚠ 80/92 layers"
    assert partial.layers_badge.toolTip() == details


def test_a_render_carries_each_adapters_layer_count(sd1_pipe, rgb, tmp_path):
    from app.core.configs import AdapterEntry
    from app.engine.patching import AdapterMixer

    path, _ = _with_extras(rgb["green"], tmp_path / "extras.safetensors")
    mixer = AdapterMixer(sd1_pipe, Family.SD1)
    try:
        report = mixer.set_mix([AdapterEntry(str(rgb["red"]), 1.0), AdapterEntry(str(path), 0.5)])
    finally:
        mixer.clear()
    red, extras = report.applied
    n = len(read_adapter(rgb["red"], LayerIndex(sd1_pipe), Family.SD1).layers)
    assert red["layers"] == f"{n}/{n} layers" and red["load_details"] == ""
    assert extras["layers"].endswith(" layers") and "ignored tensors: .reshape_weight ×1" in extras["load_details"]
