"""Main window: tabs, status bar, worker crash and restart, geometry, entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from app.ui.common.settings import window_settings
from app.ui.worker_client import WorkerState

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "diffusers", "transformers", "peft", "accelerate", "app.engine", "app.worker.loop")


def test_window_has_four_tabs_with_generate_current(qtbot, make_window):
    window = make_window()
    names = [window.tabs.tabText(i) for i in range(window.tabs.count())]
    assert names == ["Dataset", "Train", "Generate", "Library"]
    assert window.tabs.currentWidget() is window.generate_tab
    menus = [action.text() for action in window.menuBar().actions()]
    assert menus == ["&File", "&Edit", "&View", "&Worker", "&Help"]
    assert window.worker_label.text() == "Worker: not started (starts with the first job)"


def test_status_bar_shows_worker_state_and_device(qtbot, make_window):
    window = make_window()
    with qtbot.waitSignal(window.client.helloReceived, timeout=10_000):
        window.client.start()
    assert window.worker_label.text() == "Worker: ready · cpu"
    assert "worker ready: device cpu" in window.log_panel.text()
    qtbot.waitUntil(lambda: "fake worker: starting" in window.log_panel.text(), timeout=5_000)


def test_crash_offers_restart_and_restart_works(qtbot, make_window):
    window = make_window()
    tab = window.generate_tab
    tab.model_picker.setText("fake-model")
    tab.prompt.setPlainText("crash")
    tab.generate()
    qtbot.waitUntil(lambda: window.client.state is WorkerState.CRASHED, timeout=10_000)
    assert window.restart_button.isVisible()
    assert window.worker_label.text() == "Worker: stopped unexpectedly"
    assert "Restart worker" in window.statusBar().currentMessage()
    assert tab.status_label.text() == "Failed."
    assert tab.error_label.text().startswith("Worker error: The worker process exited unexpectedly")
    assert "simulated CUDA error" in tab.error_label.toolTip()
    assert "simulated CUDA error" in window.log_panel.text()

    with qtbot.waitSignal(window.client.helloReceived, timeout=10_000):
        window.restart_action.trigger()
    assert window.client.state is WorkerState.READY
    assert not window.restart_button.isVisible()
    assert window.statusBar().currentMessage() == ""


def test_closing_the_window_stops_the_worker_and_saves_geometry(qtbot, make_window):
    window = make_window()
    with qtbot.waitSignal(window.client.helloReceived, timeout=10_000):
        window.client.start()
    window.resize(780, 560)  # inside the 800x600 offscreen screen, above the window minimum
    window.close()
    assert not window.client.is_running()
    assert window.client.state is WorkerState.STOPPED
    assert window_settings().value("geometry") is not None
    again = make_window()
    assert (again.width(), again.height()) == (780, 560)


def test_log_panel_shows_app_log_records(qtbot, make_window):
    import logging

    window = make_window()
    logging.getLogger("app.ui.test").warning("something to see")
    qtbot.waitUntil(lambda: "something to see" in window.log_panel.text(), timeout=2_000)


def _run(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", **(env or {})}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=timeout
    )


def test_gui_never_imports_torch_or_the_engine(tmp_path):
    # In a fresh process: other tests in this session may have imported torch already.
    code = f"""
import json, pkgutil, importlib, sys
import app.ui
for info in pkgutil.walk_packages(app.ui.__path__, "app.ui."):
    importlib.import_module(info.name)
import app.__main__
from PySide6.QtWidgets import QApplication
qapp = QApplication([])
from app.ui.main_window import MainWindow
window = MainWindow()
window.show()
qapp.processEvents()
heavy = [m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in {HEAVY!r})]
print(json.dumps(heavy))
window.close()
"""
    result = _run(code, {"LORALOOM_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


def test_exit_after_paint_prints_and_quits(tmp_path):
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "app"],
        cwd=ROOT,
        env={
            **os.environ,
            "QT_QPA_PLATFORM": "offscreen",
            "LORALOOM_HOME": str(tmp_path),
            "LORALOOM_EXIT_AFTER_PAINT": "1",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    wall = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("first-paint ")]
    assert len(lines) == 1
    seconds = float(lines[0].split()[1])
    assert 0 < seconds <= wall
