"""The frozen app with no worker environment: the first Generate opens the setup dialog.

``sys.frozen`` is set as PyInstaller sets it; LORALOOM_HOME (tests/conftest.py) gives an
empty data folder, so no environment exists. The worker is the real one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from app.core import worker_env

ROOT = Path(__file__).resolve().parents[2]
TORCH_WHEELS = Path(os.environ.get("LORALOOM_TORCH_WHEELS", "/opt/wheels"))
WORKER_WHEELS = Path(os.environ.get("LORALOOM_WORKER_WHEELS", ROOT / ".cache" / "worker-wheels"))


@pytest.fixture
def frozen_window(qtbot, monkeypatch):
    from app.ui.main_window import MainWindow
    from app.ui.worker_client import WorkerClient

    monkeypatch.setattr(sys, "frozen", True, raising=False)
    # A frozen app's worker imports our app package from the bundle; here that is the checkout.
    monkeypatch.setattr(worker_env, "source_root", lambda: ROOT)
    client = WorkerClient()
    window = MainWindow(client)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitExposed(window)
    yield window
    client.shutdown(timeout_ms=3000, wait=True)


def click_generate(qtbot, window) -> None:
    tab = window.generate_tab
    window.tabs.setCurrentWidget(tab)
    tab.model_picker.setText("no/such-model")
    tab.prompt.setPlainText("a red fox")
    qtbot.mouseClick(tab.generate_button, Qt.MouseButton.LeftButton)


def test_first_generate_opens_the_setup_dialog_and_an_existing_python_can_be_chosen(qtbot, frozen_window):
    window = frozen_window
    assert window.client.state.value == "stopped"  # the window painted and works with no worker
    click_generate(qtbot, window)
    qtbot.waitUntil(lambda: window.setup_dialog is not None and window.setup_dialog.isVisible(), timeout=5000)
    dialog = window.setup_dialog
    assert dialog.create_radio.isChecked()
    assert str(worker_env.default_env_dir()) in dialog.create_radio.text()
    click_generate(qtbot, window)  # a second job while the dialog is open: still one dialog
    assert window.setup_dialog is dialog

    dialog.python_edit.setText(str(Path(sys.executable).parent.parent))  # the venv folder
    assert dialog.existing_radio.isChecked()
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=30_000)  # the GPU looked for
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.setup_dialog is None, timeout=120_000)
    assert worker_env.load_settings().python == str(worker_env.env_python(Path(sys.executable).parent.parent))
    # The held jobs went to a real worker on that interpreter, which says the model is missing.
    qtbot.waitUntil(lambda: window.client.hello is not None, timeout=120_000)
    assert window.client.command[1:] == ["-m", "app.worker"]
    tab = window.generate_tab
    qtbot.waitUntil(lambda: "no/such-model" in tab.error_label.text(), timeout=60_000)


def test_cancel_leaves_the_job_failed_with_what_to_do(qtbot, frozen_window):
    from app.ui.setup_dialog import DECLINED

    window = frozen_window
    click_generate(qtbot, window)
    qtbot.waitUntil(lambda: window.setup_dialog is not None, timeout=5000)
    qtbot.waitUntil(window.setup_dialog.start_button.isEnabled, timeout=30_000)
    assert window.setup_dialog.hardware_label.text().startswith("Found: ")
    qtbot.mouseClick(window.setup_dialog.cancel_button, Qt.MouseButton.LeftButton)
    tab = window.generate_tab
    qtbot.waitUntil(lambda: tab.error_label.text() != "", timeout=5000)
    assert tab.error_label.text() == f"Worker error: {DECLINED}"
    assert window.setup_dialog is None and not worker_env.default_env_dir().exists()


def test_a_path_without_python_is_one_sentence(qtbot, frozen_window, tmp_path):
    window = frozen_window
    click_generate(qtbot, window)
    qtbot.waitUntil(lambda: window.setup_dialog is not None, timeout=5000)
    dialog = window.setup_dialog
    dialog.python_edit.setText(str(tmp_path / "nothing"))
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=30_000)  # the GPU looked for
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert dialog.status_label.text() == f"{tmp_path / 'nothing'}: no Python interpreter there."
    assert dialog.isVisible() and not worker_env.settings_path().exists()


@pytest.fixture
def offline_setup(monkeypatch):
    if not (any(TORCH_WHEELS.glob("torch-*.whl")) and any(WORKER_WHEELS.glob("diffusers-*.whl"))):
        pytest.skip(f"needs a torch wheel in {TORCH_WHEELS} and `make worker-wheels`")
    monkeypatch.setenv("LORALOOM_SETUP_FIND_LINKS", os.pathsep.join([str(TORCH_WHEELS), str(WORKER_WHEELS)]))
    monkeypatch.setenv("LORALOOM_SETUP_OFFLINE", "1")
    monkeypatch.setenv("LORALOOM_SETUP_PYTHON", sys.executable)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_dialog_creates_the_environment_and_the_job_runs_there(qtbot, frozen_window, offline_setup):
    window = frozen_window
    click_generate(qtbot, window)
    qtbot.waitUntil(lambda: window.setup_dialog is not None, timeout=5000)
    dialog = window.setup_dialog
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=30_000)  # the GPU looked for
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    assert not dialog.start_button.isEnabled() and dialog.progress.maximum() == 0  # busy
    qtbot.waitUntil(lambda: window.setup_dialog is None, timeout=600_000)
    python = worker_env.env_python(worker_env.default_env_dir())
    assert python.is_file()
    qtbot.waitUntil(lambda: window.client.hello is not None, timeout=120_000)
    assert window.client.command == [str(python), "-m", "app.worker"]
    assert window.client.hello["torch"] == "2.13.0"


@pytest.mark.slow
def test_cancel_during_setup_removes_the_half_made_environment(qtbot, frozen_window, offline_setup):
    window = frozen_window
    click_generate(qtbot, window)
    qtbot.waitUntil(lambda: window.setup_dialog is not None, timeout=5000)
    dialog = window.setup_dialog
    qtbot.waitUntil(dialog.start_button.isEnabled, timeout=30_000)  # the GPU looked for
    qtbot.mouseClick(dialog.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "[2/3]" in dialog.log_view.toPlainText(), timeout=60_000)
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: dialog.start_button.isEnabled(), timeout=60_000)
    assert dialog.status_label.text() == "The worker environment was not created: setup cancelled."
    assert not worker_env.default_env_dir().exists() and dialog.isVisible()
