"""End to end: the main window, the real worker process and the tiny SD1 model.

Slow (each worker imports torch and diffusers), so each test does several things with one
worker: the tiny model trains at 64 px in a few tens of milliseconds per step.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage

from app.core.train_queue import EntryState
from app.ui.train.compare import CELL, LABEL_H
from app.ui.train.run_history import RunStatus, read_run
from app.ui.worker_client import WorkerState

pytestmark = pytest.mark.slow

TIMEOUT_MS = 180_000  # start the worker, import diffusers, load the model, train: on a busy 2-core CPU


@pytest.fixture
def window(qtbot):
    from app.ui.main_window import MainWindow
    from app.ui.worker_client import WorkerClient

    client = WorkerClient(env={"OMP_NUM_THREADS": "1"})  # the real worker; one thread is fastest for tiny models
    window = MainWindow(client)
    qtbot.addWidget(window)  # closed at teardown, which shuts the worker down
    window.resize(1180, 800)
    window.show()
    qtbot.waitExposed(window)
    window.tabs.setCurrentWidget(window.train_tab)
    return window


def fill(tab, qtbot, base: Path, dataset: Path, name: str, steps: int, **values) -> None:
    """Fill the form as a user would for the tiny model: 64 px, rank 4, one sample prompt."""
    form = tab.form
    form.preset.setCurrentIndex(form.preset.findData(""))  # (none): a 64 px run is no preset's size
    form.model_picker.setText(str(base))
    form.datasets.use_folder(str(dataset), replace=True)
    name_edit = form.fields["name"].editor
    name_edit.clear()
    qtbot.keyClicks(name_edit, name)
    settings = {
        "trigger": "sks",
        "steps": steps,
        "seed": 7,
        "network.rank": 4,
        "network.alpha": 4.0,
        "network.targets": "attention",
        "optimizer.learning_rate": 1e-3,
        "optimizer.schedule": "constant",
        "optimizer.warmup_steps": 0,
        "data.resolution": 64,
        "data.min_bucket": 64,
        "data.max_bucket": 128,
        "data.min_image_side": 32,
        "data.batch_size": 1,
        "data.caption_dropout": 0.0,
        "sample.prompts": ["{trigger}, red"],
        "sample.every": 0,
        "sample.steps": 2,
        "sample.negative": "",
        "output.save_every": 0,
        "output.keep_last": 0,
    }
    settings.update(values)
    for key, value in settings.items():
        form.fields[key].set(value)


def click(qtbot, button) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def test_train_watch_stop_resume_use_and_compare(qtbot, window, tiny_sd1, red_pictures, tmp_path):
    tab = window.train_tab
    ops = tab.ops
    fill(tab, qtbot, tiny_sd1, red_pictures, "red cat", 150)
    click(qtbot, tab.start_button)
    entry = ops.current
    assert entry is not None and entry.state is EntryState.RUNNING and not tab.start_button.isEnabled()

    # Progress events move the bar and draw the loss (and learning rate) curves.
    qtbot.waitUntil(
        lambda: tab.progress.value() >= 2 and len(tab.plot.curves().get("loss", ([],))[0]) >= 2, timeout=TIMEOUT_MS
    )
    assert tab.progress.maximum() == 150 and "Step" in tab.eta_label.text()
    curves = tab.plot.curves()
    assert curves["lr"][1][0] == pytest.approx(1e-3) and len(curves["smoothed"][0]) == len(curves["loss"][0])

    # Save checkpoint now / Sample now reach the running trainer through the worker.
    click(qtbot, tab.checkpoint_button)
    qtbot.waitUntil(lambda: tab.checkpoints.list.count() == 1, timeout=30_000)
    click(qtbot, tab.sample_button)
    qtbot.waitUntil(lambda: len(tab.gallery.loaded()) == 1, timeout=30_000)
    sample = tab.gallery.paths()[0]
    assert Path(sample).is_file() and Path(sample).parent.name == "samples"
    tab.gallery.button(sample).click()  # click to enlarge
    assert tab.gallery.viewer.isVisible() and not tab.gallery.viewer.preview.pixmap().isNull()
    tab.gallery.viewer.close()

    click(qtbot, tab.stop_button)
    assert entry.state is EntryState.STOPPING and tab.stop_button.text() == "Stop now"
    qtbot.waitUntil(lambda: entry.state is EntryState.STOPPED, timeout=60_000)
    stopped_at = entry.step
    assert 0 < stopped_at < 150, "the run ended before Stop reached it"
    run_dir = Path(entry.run_dir)
    assert read_run(run_dir).saved_step == stopped_at

    # History lists the interrupted run; Resume finishes it.
    tab.views.setCurrentWidget(tab.history_panel)
    qtbot.waitUntil(
        lambda: any(r.path == run_dir and r.status is RunStatus.INTERRUPTED for r in ops.history), timeout=10_000
    )
    assert tab.history_panel.select(str(run_dir))
    click(qtbot, tab.history_panel.resume_button)
    resumed = ops.current
    assert resumed is not None and resumed.resume == str(run_dir)
    qtbot.waitUntil(lambda: resumed.state.final, timeout=TIMEOUT_MS)
    assert resumed.state is EntryState.DONE, resumed.error
    assert resumed.step == 150 and tab.progress.value() == 150
    steps, _losses, _lrs = ops.view.series()
    assert steps == list(range(1, 151))  # the curve before the stop (from log.jsonl) and after it
    final = run_dir / "red cat.safetensors"
    assert final.is_file() and str(final) in tab.checkpoints.paths()
    qtbot.waitUntil(lambda: any(r.path == run_dir and r.status is RunStatus.DONE for r in ops.history), timeout=10_000)

    # Use in Generate puts the adapter into the Generate tab's stack.
    tab.views.setCurrentWidget(tab.checkpoints)
    tab.checkpoints.select(str(final))
    click(qtbot, tab.checkpoints.use_button)
    assert window.tabs.currentWidget() is window.generate_tab
    assert window.generate_ops.stack.index_of(str(final)) >= 0
    assert window.generate_tab.model_picker.text() == str(tiny_sd1), "the run's base comes along"

    # Compare checkpoints: the same prompt and seed with each, in one grid saved as one picture.
    window.tabs.setCurrentWidget(tab)
    tab.checkpoints.list.clearSelection()
    click(qtbot, tab.checkpoints.compare_button)
    dialog = tab.compare_dialog
    # Every adapter of the run is offered (Save now, the save at Stop, the final one); pick the first and last.
    assert dialog is not None and [p for _l, p in dialog.checked()] == tab.checkpoints.paths()
    for row in range(1, dialog.list.count() - 1):
        dialog.list.item(row).setCheckState(Qt.CheckState.Unchecked)
    labels = [label for label, _p in dialog.checked()]
    assert len(labels) == 2 and labels[0].startswith("step ") and labels[1] == "final (step 150)"
    dialog.steps.setValue(2)
    assert dialog.start_render()
    qtbot.waitUntil(lambda: tab.compare_ops.done(), timeout=TIMEOUT_MS)
    assert all(c.image and not c.error for c in tab.compare_ops.cells), [c.error for c in tab.compare_ops.cells]
    qtbot.waitUntil(lambda: all(not p.pixmap().isNull() for p in dialog.pictures()), timeout=10_000)
    grid = tmp_path / "grid.png"
    dialog.save_grid(str(grid))
    qtbot.waitUntil(lambda: "Saved" in dialog.status.text(), timeout=10_000)
    image = QImage(str(grid))
    assert (image.width(), image.height()) == (2 * CELL, CELL + LABEL_H)


def test_queue_crash_and_hard_stop(qtbot, window, tiny_sd1, red_pictures):
    tab = window.train_tab
    ops = tab.ops
    client = window.client
    configs = []
    # The third run reuses the second's name: it is written to first-2 and called that everywhere.
    for name, steps, save_every in (("long", 5000, 0), ("first", 3, 0), ("first", 3, 0)):
        fill(tab, qtbot, tiny_sd1, red_pictures, name, steps, **{"output.save_every": save_every})
        click(qtbot, tab.queue_button)
        configs.append(ops.entries[-1])
    long_run, first, second = configs
    assert [e.state for e in configs] == [EntryState.WAITING] * 3 and tab.start_button.isEnabled()

    tab.views.setCurrentWidget(tab.queue_panel)
    click(qtbot, tab.queue_panel.start_button)
    qtbot.waitUntil(lambda: long_run.training, timeout=TIMEOUT_MS)

    # The worker dies mid-run: that run is marked failed, the queue goes on with a fresh worker.
    os.kill(client.pid(), signal.SIGKILL)
    qtbot.waitUntil(lambda: long_run.state is EntryState.FAILED, timeout=10_000)
    assert "crashed" in long_run.error
    qtbot.waitUntil(lambda: second.state.final, timeout=TIMEOUT_MS)
    assert (first.state, second.state) == (EntryState.DONE, EntryState.DONE), (first.error, second.error)
    assert Path(first.run_dir, "first.safetensors").is_file() and Path(second.run_dir, "first.safetensors").is_file()
    assert Path(second.run_dir).name == "first-2"
    texts = [tab.queue_panel.list.item(i).text() for i in range(tab.queue_panel.list.count())]
    assert texts[0].startswith("long — failed") and texts[1:] == ["first — done at step 3", "first-2 — done at step 3"]
    assert tab.status_label.text() == "first-2: finished at step 3."
    qtbot.waitUntil(lambda: {r.path.name for r in ops.history} >= {"first", "first-2"}, timeout=10_000)
    history = [tab.history_panel.table.item(r, 0).text() for r in range(tab.history_panel.table.rowCount())]
    assert {"first", "first-2"} <= set(history)
    assert tab.view_label.text() == "Showing: first-2", "not (training now) once the run has ended"

    # Stop twice: the second press stops at once (the worker is killed); the saved state survives.
    fill(tab, qtbot, tiny_sd1, red_pictures, "hard", 5000, **{"output.save_every": 2})
    click(qtbot, tab.start_button)
    hard = ops.current
    qtbot.waitUntil(
        lambda: any(kind == "checkpoint" for _s, kind in ops.live_view.adapters.values()), timeout=TIMEOUT_MS
    )
    click(qtbot, tab.stop_button)
    click(qtbot, tab.stop_button)
    qtbot.waitUntil(lambda: hard.state is EntryState.STOPPED, timeout=10_000)
    assert client.state is WorkerState.STOPPED  # stopped on request, not crashed: no Restart prompt
    assert not window.restart_button.isVisible()
    info = read_run(hard.run_dir)
    assert info.status is RunStatus.INTERRUPTED and info.saved_step >= 2 and info.checkpoints
    assert tab.start_button.isEnabled() and not tab.stop_button.isEnabled()


def test_try_a_prompt_and_the_validation_loss_while_training(qtbot, window, tiny_sd1, red_pictures):
    tab = window.train_tab
    ops = tab.ops
    fill(
        tab,
        qtbot,
        tiny_sd1,
        red_pictures,
        "red try",
        400,
        **{"validation.images": 1, "validation.every": 2, "output.save_every": 4, "output.keep_last": 0},
    )
    assert not tab.try_button.isEnabled()  # nothing is training yet
    click(qtbot, tab.start_button)
    entry = ops.current
    qtbot.waitUntil(lambda: len(tab.plot.curves().get("validation", ([],))[0]) >= 2, timeout=TIMEOUT_MS)
    val_steps, val_losses = tab.plot.curves()["validation"]
    assert all(s % 2 == 0 for s in val_steps) and all(v > 0 for v in val_losses)
    assert "validation loss" in tab.plot.legend.text()

    # Try a prompt…: a prompt of the user's, rendered by the running job, lands in Samples with its step.
    click(qtbot, tab.try_button)
    dialog = tab.try_dialog
    assert dialog is not None and dialog.isVisible() and dialog.textValue() == "{trigger}, red"
    dialog.setTextValue("{trigger} on a beach")
    asked_at = entry.step
    dialog.accept()
    qtbot.waitUntil(lambda: any(Path(p).name.startswith("try-") for p in tab.gallery.paths()), timeout=60_000)
    tried = next(p for p in tab.gallery.paths() if Path(p).name.startswith("try-"))
    step, meta = ops.view.samples[tried]
    assert step >= asked_at and meta["prompt"] == "sks on a beach" and meta["training_step"] == step
    assert tab.gallery.button(tried).text() == "try #0"
    assert entry.state is EntryState.RUNNING  # the run goes on

    # Checkpoints (and so Compare) mark the one with the lowest validation loss.
    qtbot.waitUntil(lambda: tab.checkpoints.list.count() >= 2, timeout=TIMEOUT_MS)
    click(qtbot, tab.stop_button)
    qtbot.waitUntil(lambda: entry.state is EntryState.STOPPED, timeout=60_000)
    labels = [tab.checkpoints.list.item(i).text() for i in range(tab.checkpoints.list.count())]
    assert sum("★ best validation loss" in label for label in labels) == 1, labels
    run = read_run(entry.run_dir)
    assert run.best is not None and any("★" in label for label, _ in run.adapters())
    tab.views.setCurrentWidget(tab.history_panel)
    qtbot.waitUntil(
        lambda: any(r.path == Path(entry.run_dir) and r.status is RunStatus.INTERRUPTED for r in ops.history),
        timeout=10_000,
    )
    row = next(i for i, r in enumerate(ops.history) if r.path == Path(entry.run_dir))
    assert f"best val {run.best[1]:.4f} at step {run.best[0]}" in tab.history_panel.table.item(row, 3).text()


def test_a_flux_base_offers_the_flux_presets_and_one_runs_to_the_end(qtbot, window, tiny_flux1, red_pictures):
    tab = window.train_tab
    form = tab.form
    form.model_picker.setText(str(tiny_flux1))
    offered = [form.preset.itemData(i) for i in range(1, form.preset.count())]
    assert offered[:4] == ["flux-dev-character", "flux-dev-character-12gb", "flux-dev-style", "flux-dev-style-12gb"]
    assert not any(name.startswith("sdxl") for name in offered)  # (the preset on show may stay named)
    index = form.preset.findData("flux-dev-character-12gb")
    form.preset.setCurrentIndex(index)
    form.preset.activated.emit(index)  # as a pick in the combo box
    assert form.fields["fp8_base"].get() is True and form.fields["network.rank"].get() == 16
    assert form.fields["flow.timestep_sampling"].get() == "shift"
    # Small sizes for the tiny model (512 px: within the 1.5x of its 768 px the form allows for a
    # preset); the preset's fp8 base, flow settings and cached text stay.
    small = {"data.resolution": 512, "data.min_bucket": 256, "data.max_bucket": 768, "sample.every": 3}
    fill(tab, qtbot, tiny_flux1, red_pictures, "flux red", 3, **small, **{"sample.guidance": 3.5})
    form._select_preset("flux-dev-character-12gb")
    assert form.fields["fp8_base"].get() is True
    click(qtbot, tab.start_button)
    entry = tab.ops.current
    assert entry is not None, form.error_label.text()
    qtbot.waitUntil(lambda: entry.state.final, timeout=TIMEOUT_MS)
    assert entry.state is EntryState.DONE, entry.error
    assert entry.step == 3 and tab.progress.value() == 3
    qtbot.waitUntil(lambda: len(tab.gallery.loaded()) == 1, timeout=30_000)  # the sample through FluxPipeline
    final = Path(entry.run_dir) / "flux red.safetensors"
    from app.core.safetensors_header import read_header

    header = read_header(final)
    assert header.metadata["ss_base_model_version"] == "flux1"
    assert "fp8_base = true" in header.metadata["loraloom.config"]
    assert 'preset = "flux-dev-character-12gb"' in header.metadata["loraloom.config"]
