"""Long jobs seen from outside the window: progress in the title, a notice when one ends."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

from app.core.train_config import load_preset


def config(name: str):
    cfg = load_preset("sd15-character")
    cfg.name, cfg.base = name, "tiny"
    return cfg


def test_title_shows_progress_and_an_inactive_window_is_told_when_training_ends(qtbot, make_window):
    window = make_window(FAKE_WORKER_STEP_S="0.2")
    assert window.windowTitle() == "LoRA Loom"
    titles: list[str] = []
    window.windowTitleChanged.connect(titles.append)
    entry = window.train_tab.ops.start(config("shapes_c"))
    qtbot.waitUntil(lambda: entry.step >= 1, timeout=10_000)
    assert window.windowTitle() == f"[{entry.step * 100 // entry.total}%] LoRA Loom"

    other = QWidget()
    qtbot.addWidget(other)
    other.show()
    other.activateWindow()
    qtbot.waitUntil(lambda: not window.isActiveWindow(), timeout=5_000)
    with qtbot.waitSignal(window.notifier.notified, timeout=10_000) as notice:
        pass
    assert notice.args == ["Training 'shapes_c' finished."]
    assert window.windowTitle() == "LoRA Loom"
    assert "[25%] LoRA Loom" in titles and "[100%] LoRA Loom" in titles


def test_no_notice_while_the_window_is_active_and_renders_leave_the_title(qtbot, make_window):
    window = make_window(FAKE_WORKER_STEP_S="0.05")
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow, timeout=5_000)
    notices: list[str] = []
    window.notifier.notified.connect(notices.append)
    titles: list[str] = []
    window.windowTitleChanged.connect(titles.append)
    job = window.generate_ops.generate({"base": "tiny", "prompt": "a fox", "steps": 3})
    qtbot.waitUntil(lambda: window.tracker.get(job).state.is_final, timeout=10_000)
    assert window.tracker.get(job).step == 3 and titles == []  # a render is short: the title stays
    entry = window.train_tab.ops.start(config("seen"))
    qtbot.waitUntil(lambda: entry.state.final, timeout=10_000)
    assert notices == [] and window.windowTitle() == "LoRA Loom" and "[100%] LoRA Loom" in titles
