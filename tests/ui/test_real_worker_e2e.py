"""End to end: the window, the real ``python -m app.worker`` and the tiny SD1 model.

Slow (the worker imports torch and loads the model, then renders on the CPU), so each
test does several things with one worker.
"""

from __future__ import annotations

import os
import signal

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from app.ui.jobs import JobState
from app.ui.worker_client import WorkerClient, WorkerState

pytestmark = pytest.mark.slow

RENDER_TIMEOUT_MS = 120_000  # import torch + load the model + render, on a busy 2-core CPU


def same_picture(pixmap, path: str) -> bool:
    shown = pixmap.toImage().convertToFormat(QImage.Format.Format_RGB32)
    on_disk = QImage(path).convertToFormat(QImage.Format.Format_RGB32)
    return not on_disk.isNull() and shown == on_disk


@pytest.fixture
def real_window(qtbot, make_window, tiny_sd1):
    client = WorkerClient()  # the default command: the real worker
    assert client.command[1:] == ["-m", "app.worker"]
    window = make_window(client)
    tab = window.generate_tab
    tab.model_picker.setText(str(tiny_sd1))
    tab.prompt.setPlainText("a red ball on a white table")
    tab.width_box.setValue(64)
    tab.height_box.setValue(64)
    tab.seed_lock.setChecked(True)
    tab.seed.setValue(1234)
    return window


def first_render_step(events, job_id: str) -> bool:
    """A progress event of real sampling (step 0 is the model loading)."""
    return any(e.get("step", 0) >= 1 for e in events.of_type("progress", job_id))


def test_render_then_cancel_with_the_real_worker(qtbot, real_window, event_log):
    window = real_window
    tab = window.generate_tab
    events = event_log(window.client)
    tab.steps.setValue(3)
    qtbot.mouseClick(tab.generate_button, Qt.MouseButton.LeftButton)
    job_id = window.generate_ops.job_id
    qtbot.waitUntil(lambda: not tab.preview.pixmap().isNull(), timeout=RENDER_TIMEOUT_MS)
    qtbot.waitUntil(lambda: events.finished(job_id) is not None, timeout=10_000)

    image = events.of_type("image", job_id)[0]
    pixmap = tab.preview.pixmap()
    assert (pixmap.width(), pixmap.height()) == (64, 64)
    assert tab.preview.path() == image["path"]
    assert same_picture(pixmap, image["path"])
    assert image["meta"]["seed"] == 1234 and image["meta"]["steps"] == 3
    assert events.finished(job_id)["status"] == "done"
    assert tab.status_label.text() == "Done."
    assert window.worker_label.text() == "Worker: ready · cpu"
    assert window.model_label.text().startswith("Model: tiny-sd1")

    # Cancel during a render: the worker stops within a step and says so.
    tab.steps.setValue(40)
    tab.generate()
    long_job = window.generate_ops.job_id
    qtbot.waitUntil(lambda: first_render_step(events, long_job), timeout=RENDER_TIMEOUT_MS)
    qtbot.mouseClick(tab.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: events.finished(long_job) is not None, timeout=60_000)
    assert events.finished(long_job)["status"] == "cancelled"
    assert window.tracker.get(long_job).state is JobState.CANCELLED
    assert tab.status_label.text() == "Cancelled."
    assert not tab.error_label.isVisible()
    assert window.client.state is WorkerState.READY  # the worker survived the cancel
    assert tab.preview.path() == image["path"]  # the last good picture stays


def test_kill_9_mid_render_then_restart_and_render_again(qtbot, real_window, event_log):
    window = real_window
    tab = window.generate_tab
    events = event_log(window.client)
    tab.steps.setValue(40)

    killed: list[str] = []

    def kill_on_first_step(event: dict) -> None:
        if not killed and event["type"] == "progress" and event.get("step", 0) >= 1:
            killed.append(event["job"])
            os.kill(window.client.pid(), signal.SIGKILL)

    window.client.eventReceived.connect(kill_on_first_step)
    tab.generate()
    job_id = window.generate_ops.job_id
    qtbot.waitUntil(lambda: events.finished(job_id) is not None, timeout=RENDER_TIMEOUT_MS)
    window.client.eventReceived.disconnect(kill_on_first_step)

    assert killed == [job_id]
    finished = events.finished(job_id)
    assert finished["status"] == "failed" and finished["error"]["kind"] == "internal"
    assert "killed by a signal" in finished["error"]["message"]
    assert window.isVisible()  # the GUI is still up
    assert window.client.state is WorkerState.CRASHED
    assert window.restart_button.isVisible()
    assert tab.status_label.text() == "Failed."
    assert tab.error_label.text().startswith("Worker error: The worker process crashed")

    with qtbot.waitSignal(window.client.helloReceived, timeout=60_000):
        window.restart_action.trigger()
    assert not window.restart_button.isVisible()

    tab.steps.setValue(2)
    tab.generate()
    again = window.generate_ops.job_id
    qtbot.waitUntil(lambda: events.finished(again) is not None, timeout=RENDER_TIMEOUT_MS)
    assert events.finished(again)["status"] == "done"
    image = events.of_type("image", again)[0]
    assert tab.preview.path() == image["path"]
    assert same_picture(tab.preview.pixmap(), image["path"])
    assert not tab.error_label.isVisible()
