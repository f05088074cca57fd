"""A Hub model that is not on disk while the Hub cannot be reached: one sentence everywhere
(``loraloom caption``, ``loraloom generate``, the Dataset tab), the dataset folder checked
before any model loads, the caption dialog's Browse… for a local model folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from PIL import Image

from app.core.errors import clip_words, not_downloaded_message

BLIP = "Salesforce/blip-image-captioning-large"
SD15 = "runwayml/stable-diffusion-v1-5"


def _env(tmp_path, *, offline: bool) -> dict[str, str]:
    """An empty HF cache (never the user's), and the Hub either switched off or unreachable."""
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf-home"), HF_HUB_OFFLINE="1" if offline else "0")
    env.pop("HF_HUB_CACHE", None)
    if not offline:
        with socket.socket() as s:  # a port nobody listens on: connection refused at once
            s.bind(("127.0.0.1", 0))
            env["HF_ENDPOINT"] = f"http://127.0.0.1:{s.getsockname()[1]}"
    return env


def _run(env, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def pictures(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    Image.new("RGB", (300, 300), (200, 20, 20)).save(folder / "a.png")
    return folder


@pytest.mark.parametrize("offline", [True, False], ids=["HF_HUB_OFFLINE", "unreachable"])
def test_cli_caption_and_generate_say_not_downloaded_in_one_line(tmp_path, pictures, offline):
    env = _env(tmp_path, offline=offline)
    out = _run(env, "caption", str(pictures))
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1] == f"loraloom: error: {not_downloaded_message(BLIP)}"
    assert not_downloaded_message(BLIP) == (
        "Salesforce/blip-image-captioning-large is not downloaded and the Hub cannot be reached (offline). "
        "Download it once online, or pick a local model folder."
    )
    out = _run(env, "generate", "--base", SD15, "--prompt", "a cat")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines()[-1] == f"loraloom: error: {not_downloaded_message(SD15)}"


def test_cli_caption_checks_the_folder_before_loading_a_model(tmp_path):
    out = _run(_env(tmp_path, offline=True), "caption", str(tmp_path / "no-such-folder"))
    assert out.returncode == 1
    assert out.stderr.strip() == f"loraloom: error: {tmp_path / 'no-such-folder'}: no such folder"


def test_a_long_library_message_is_cut_between_words():
    text = "Can't load image processor for 'Salesforce/blip-image-captioning-large'. " * 6
    short = clip_words(text, 120)
    assert len(short) <= 120 and short.endswith(" …")
    assert text.startswith(short[:-2]) and text[len(short) - 2] == " ", "cut at a word boundary"
    assert clip_words("short one\nsecond line") == "short one"


def test_caption_dialog_browse_picks_a_local_model_folder(qtbot, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    from app.ui.dataset.caption_dialog import CaptionDialog

    dialog = CaptionDialog(has_selection=False)
    qtbot.addWidget(dialog)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path / "blip-local"))
    dialog.browse_button.click()
    assert dialog.model.text() == str(tmp_path / "blip-local")
    assert dialog.values()["model"] == str(tmp_path / "blip-local")
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: "")  # Cancel keeps the text
    dialog.browse_button.click()
    assert dialog.model.text() == str(tmp_path / "blip-local")


def test_caption_dialog_offers_the_backends_the_cli_names(qtbot):
    """One list of captioning backends (core's BACKEND_LABELS): the dialog shows the same labels, in order."""
    from app.core.dataset.caption_config import BACKEND_LABELS
    from app.ui.dataset.caption_dialog import CaptionDialog

    dialog = CaptionDialog(has_selection=False)
    qtbot.addWidget(dialog)
    shown = [(dialog.backend.itemData(i), dialog.backend.itemText(i)) for i in range(dialog.backend.count())]
    assert shown == [(backend.value, label) for backend, label in BACKEND_LABELS.items()]


def test_dataset_tab_says_not_downloaded_when_offline(qtbot, tmp_path, pictures, monkeypatch):
    from app.ui.main_window import MainWindow
    from app.ui.worker_client import WorkerClient

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # the worker inherits it: an empty cache
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    window = MainWindow(WorkerClient())
    qtbot.addWidget(window)
    tab = window.dataset_tab
    assert tab.open_folder(str(pictures))
    qtbot.waitUntil(lambda: not tab.session.scanning, timeout=20_000)
    assert tab.start_auto_caption({"backend": "blip", "model": ""}) is not None
    qtbot.waitUntil(lambda: tab.session.caption_job is None, timeout=120_000)
    assert tab.status.text() == f"auto-captioning failed: {not_downloaded_message(BLIP)}"
    assert tab.progress_label.text() == "" and not tab.progress.isVisible()


def test_caption_dialog_says_which_backends_run_on_a_cpu_and_shows_each_backends_fields(qtbot):
    from app.core.dataset.caption_config import CPU_NOTES, KNOWN_MODELS, CaptionBackend
    from app.ui.dataset.caption_dialog import CaptionDialog

    dialog = CaptionDialog(has_selection=False)
    qtbot.addWidget(dialog)
    dialog.show()
    assert dialog.cpu_notes.text().splitlines() == list(CPU_NOTES.values())
    assert len(CPU_NOTES) == len(CaptionBackend) - 1, "a line for every backend but auto"

    def pick(backend: CaptionBackend) -> None:
        dialog.backend.setCurrentIndex(dialog.backend.findData(backend.value))

    pick(CaptionBackend.FLORENCE)
    assert dialog.florence_task.isVisible() and not dialog.vlm_prompt.isVisible()
    dialog.florence_task.setCurrentIndex(dialog.florence_task.findData("<GENERATE_TAGS>"))
    assert dialog.values()["florence_task"] == "<GENERATE_TAGS>"
    pick(CaptionBackend.WD14)
    completions = dialog.model.completer().model()
    shown = [completions.index(i, 0).data() for i in range(completions.rowCount())]
    assert shown == list(KNOWN_MODELS[CaptionBackend.WD14]) and "SmilingWolf/wd-eva02-large-tagger-v3" in shown
    pick(CaptionBackend.VLM)
    assert dialog.vlm_prompt.isVisible() and dialog.four_bit.isVisible() and not dialog.florence_task.isVisible()
    dialog.vlm_prompt.setText("Describe {trigger}; known tags: {tags}")
    dialog.discouraged.setText("watermark, blurry")
    dialog.four_bit.setChecked(True)
    values = dialog.values()
    assert values["backend"] == "vlm" and values["vlm_prompt"] == "Describe {trigger}; known tags: {tags}"
    assert values["discouraged_words"] == "watermark, blurry" and values["load_in_4bit"] is True
