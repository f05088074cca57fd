"""The model picker (Generate and Train share it) turns a Flux.1 transformer file into one model
choice with its CLIP-L, T5 and VAE files, offering the ones beside it; the choice is remembered
across restarts; the Train form reads its family and names a missing companion in a sentence."""

from __future__ import annotations

import pytest
import torch
from flux_bfl import bfl_shapes
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QFileDialog
from safetensors.torch import save_file

from app.core import model_choice
from app.core.model_choice import ModelChoice, parse
from app.ui.recent_models import RecentModels
from app.ui.widgets.flux_files_dialog import FluxFilesDialog
from app.ui.widgets.model_picker import ModelPicker

_TINY = dict(
    in_channels=64, num_layers=1, num_single_layers=1, num_attention_heads=2, attention_head_dim=8,
    joint_attention_dim=32, pooled_projection_dim=32, patch_size=1, guidance_embeds=True,
)  # fmt: skip


@pytest.fixture
def comfy_folder(tmp_path):
    """A ComfyUI models folder: the transformer in unet/, the encoders in clip/, the VAE in vae/."""
    models = tmp_path / "models"
    unet = models / "unet" / "flux1-dev.safetensors"
    unet.parent.mkdir(parents=True)
    save_file({k: torch.zeros(s) for k, s in bfl_shapes(_TINY).items()}, str(unet))
    for rel in ("clip/clip_l.safetensors", "clip/t5xxl_fp16.safetensors", "vae/ae.safetensors"):
        (models / rel).parent.mkdir(parents=True, exist_ok=True)
        save_file({"x": torch.zeros(1)}, str(models / rel))
    return models


def _picker(qtbot, tmp_path):
    recent = RecentModels(tmp_path / "recent.json")
    picker = ModelPicker(recent)
    qtbot.addWidget(picker)
    return picker, recent


def test_a_transformer_file_becomes_one_choice_with_the_files_beside_it(qtbot, tmp_path, comfy_folder, monkeypatch):
    picker, recent = _picker(qtbot, tmp_path)
    unet = comfy_folder / "unet" / "flux1-dev.safetensors"
    assert model_choice.needs_companions(unet)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(unet), ""))
    seen = []

    def accept(dialog):
        seen.append({k: e.text() for k, e in dialog.edits.items()})
        return QDialog.DialogCode.Accepted

    monkeypatch.setattr(FluxFilesDialog, "exec", accept)
    picker.browse_file.click()
    expected = ModelChoice(
        str(unet),
        clip_l=str(comfy_folder / "clip" / "clip_l.safetensors"),
        t5=str(comfy_folder / "clip" / "t5xxl_fp16.safetensors"),
        vae=str(comfy_folder / "vae" / "ae.safetensors"),
    )
    assert seen[0]["vae"] == expected.vae and seen[0]["t5_tokenizer"] == ""
    assert picker.text() == expected.text()
    # remembered across restarts: the recent-models list keeps the one string
    recent.add(picker.text())
    assert RecentModels(tmp_path / "recent.json").items()[0] == expected.text()
    # picked again: the dialog starts from the current choice
    monkeypatch.setattr(FluxFilesDialog, "exec", lambda d: QDialog.DialogCode.Rejected)
    picker.browse_file.click()
    assert picker.text() == str(unet)  # Cancel: the file alone (loading it then names what it needs)


def test_the_dialog_names_the_missing_file_and_holds_ok(qtbot, comfy_folder):
    unet = comfy_folder / "unet" / "flux1-dev.safetensors"
    dialog = FluxFilesDialog(str(unet))
    qtbot.addWidget(dialog)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert ok.isEnabled() and dialog.problem.text() == ""
    dialog.edits["vae"].setText("")
    assert not ok.isEnabled() and dialog.problem.text() == "Pick the VAE file (ae.safetensors)."
    dialog.edits["vae"].setText(str(comfy_folder / "gone.safetensors"))
    assert (
        dialog.problem.text() == f"{comfy_folder / 'gone.safetensors'}: no such file (the VAE file (ae.safetensors))."
    )
    dialog.edits["vae"].setText(str(comfy_folder / "vae" / "ae.safetensors"))
    dialog.edits["t5_tokenizer"].setText(str(comfy_folder / "no-folder"))
    assert not ok.isEnabled() and "no such folder" in dialog.problem.text()


def test_other_files_are_picked_as_they_are(qtbot, tmp_path, monkeypatch):
    picker, _ = _picker(qtbot, tmp_path)
    sd = tmp_path / "sd15.safetensors"
    save_file({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, str(sd))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(sd), ""))
    monkeypatch.setattr(FluxFilesDialog, "exec", lambda d: pytest.fail("no companions for an SD file"))
    picker.browse_file.click()
    assert picker.text() == str(sd)


def test_the_train_form_reads_the_choice(make_tab, comfy_folder):
    form = make_tab().form
    unet = comfy_folder / "unet" / "flux1-dev.safetensors"
    choice = ModelChoice(str(unet), **model_choice.usual_companions(unet))
    form.model_picker.setText(choice.text())
    presets = [form.preset.itemData(i) for i in range(1, form.preset.count())]
    assert presets[:2] == ["flux-dev-character", "flux-dev-character-12gb"]
    gone = ModelChoice(str(unet), clip_l=choice.clip_l, t5=choice.t5, vae=str(comfy_folder / "ae.safetensors"))
    form.model_picker.setText(gone.text())
    assert form.ready_config() is None
    assert form.error_label.text().startswith(f"Base model: {comfy_folder / 'ae.safetensors'}: not there")
    assert parse(gone.text()) == gone
