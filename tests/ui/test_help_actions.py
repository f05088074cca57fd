"""Help > About (versions, the worker's torch/diffusers/device) and Help > Report a problem."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest
from PySide6.QtGui import QGuiApplication

from app import __version__

FAKE_WORKER = Path(__file__).resolve().parents[1] / "ui" / "fake_worker.py"
TOKEN = "hf_HelpMenuSecretToken1234567890"


@pytest.fixture
def window(qtbot):
    from app.ui.main_window import MainWindow
    from app.ui.worker_client import WorkerClient

    client = WorkerClient([sys.executable, str(FAKE_WORKER)])
    win = MainWindow(client)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitExposed(win)
    yield win
    client.shutdown(timeout_ms=2000, wait=True)


def test_about_shows_the_version_and_the_worker_once_known(qtbot, window):
    help_menu = [a for a in window.menuBar().actions() if a.text() == "&Help"][0].menu()
    assert [a.text() for a in help_menu.actions() if a.text()] == [
        "Open documentation",
        "Report a problem…",
        "About LoRA Loom",
    ]
    window.help_actions.about_action.trigger()
    box = window.help_actions.box
    assert f"LoRA Loom {__version__}" in box.text() and "Built from commit " in box.text()
    assert "Worker: not started yet" in box.text()
    box.close()
    window.client.start()
    qtbot.waitUntil(lambda: window.client.hello is not None, timeout=10_000)
    window.help_actions.about_action.trigger()
    assert "Worker: torch fake, diffusers fake, device cpu" in window.help_actions.box.text()


def test_report_a_problem_copies_a_redacted_report_and_saves_the_zip(qtbot, window, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    window.log_panel.append_app_message("info", f"something with {TOKEN} in {Path.home()}/x")
    window.help_actions.report_action.trigger()
    qtbot.waitUntil(
        lambda: window.help_actions.box is not None and window.help_actions.box.isVisible(), timeout=120_000
    )
    copied = QGuiApplication.clipboard().text()
    assert copied == window.help_actions.summary
    assert "[  ok] Python and OS" in copied and "] Hub: " in copied and TOKEN not in copied
    target = tmp_path / "report.zip"
    window.help_actions.save_zip(target)
    qtbot.waitUntil(target.exists, timeout=30_000)
    qtbot.waitUntil(lambda: window.statusBar().currentMessage() == f"Report saved: {target}", timeout=10_000)
    with zipfile.ZipFile(target) as archive:
        texts = {n: archive.read(n).decode("utf-8") for n in archive.namelist()}
    assert "log-panel.txt" in texts and "something with <redacted> in ~/x" in texts["log-panel.txt"]
    assert all(TOKEN not in t and str(Path.home()) not in t for t in texts.values())
