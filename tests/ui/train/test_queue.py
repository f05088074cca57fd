"""The run queue's order and its behaviour when runs fail (here: a worker that cannot start)."""

from __future__ import annotations

from app.core.train_config import TrainConfig
from app.core.train_queue import EntryState


def configs(*names: str) -> list[TrainConfig]:
    return [TrainConfig.from_dict({"name": n, "steps": 5}) for n in names]


def test_waiting_runs_can_be_reordered_and_removed(make_tab):
    ops = make_tab().ops
    a, b, c = (ops.enqueue(cfg) for cfg in configs("a", "b", "c"))
    ops.move(c.id, -1)
    assert [e.name for e in ops.entries] == ["a", "c", "b"]
    ops.move(a.id, -5)
    assert [e.name for e in ops.entries] == ["a", "c", "b"]
    ops.remove(c.id)
    front = ops.enqueue(configs("first")[0], front=True)
    assert [e.name for e in ops.entries] == ["first", "a", "b"] and front.state is EntryState.WAITING
    assert ops.current is None and len(ops.waiting()) == 3


def test_every_run_fails_with_a_sentence_and_the_queue_goes_on(make_tab, qtbot):
    tab = make_tab()
    ops = tab.ops
    for cfg in configs("one", "two"):
        ops.enqueue(cfg)
    assert tab.queue_panel.start_button.isEnabled()
    tab.queue_panel.start_button.click()
    qtbot.waitUntil(lambda: all(e.state is EntryState.FAILED for e in ops.entries), timeout=10_000)
    assert all("could not be started" in e.error for e in ops.entries)
    items = [tab.queue_panel.list.item(i).text() for i in range(tab.queue_panel.list.count())]
    assert items[0].startswith("one — failed: Worker error: The worker could not be started")
    assert items[1].startswith("two — failed")
    assert tab.start_button.isEnabled() and not tab.stop_button.isEnabled()


def test_the_compare_grid_is_one_labelled_picture(qtbot, tmp_path):
    from PySide6.QtGui import QColor, QImage

    from app.ui.train.compare import CELL, LABEL_H, compose_grid

    cells = []
    for i, colour in enumerate(((200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0))):
        image = QImage(64, 32, QImage.Format.Format_RGB32)
        image.fill(QColor(*colour))
        path = tmp_path / f"c{i}.png"
        image.save(str(path))
        cells.append((f"step {i}", str(path)))
    cells.append(("failed", ""))  # a render that failed leaves its cell blank, labelled
    out = tmp_path / "grid.png"
    assert compose_grid(cells, str(out)) == str(out)
    grid = QImage(str(out))
    assert (grid.width(), grid.height()) == (4 * CELL, 2 * (CELL + LABEL_H))
    assert grid.pixelColor(CELL // 2, CELL // 2) == QColor(200, 0, 0)  # scaled to fit, centred
    assert grid.pixelColor(CELL + CELL // 2, CELL // 2) == QColor(0, 200, 0)
    assert grid.pixelColor(CELL // 2, CELL + LABEL_H + CELL // 2) == QColor(255, 255, 255)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left


def test_caching_progress_shows_its_sentence_but_leaves_the_run_at_step_zero(make_tab):
    """While latents are cached the worker counts pictures (phase "caching"); the queue, the bar and
    a stop during caching still speak of the run's steps."""
    ops = make_tab().ops
    entry = ops.enqueue(configs("cache")[0])
    entry.state, entry.job_id = EntryState.RUNNING, "job-1"  # as if the worker had taken it
    ops.client.jobSubmitted.emit({"id": "job-1", "kind": "train"})  # the tracker follows it,
    ops._follow(entry, ops.tracker.handle("job-1"))  # and so does the queue (as _run_next does)
    shown = []
    ops.progressChanged.connect(lambda *args: shown.append(args))
    ops.client.eventReceived.emit(
        {
            "type": "progress",
            "job": "job-1",
            "step": 3,
            "total": 8,
            "eta_s": None,
            "message": "caching latents 3/8",
            "phase": "caching",
        }
    )
    assert shown == [(0, 5, None, "caching latents 3/8")]
    assert entry.describe() == "cache — running 0/5"
