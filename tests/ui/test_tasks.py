"""The one background-task relay (app/ui/common/tasks.py): results and errors reach the GUI
thread, a cancelled task's result is dropped, a cancelled task can see it and stop."""

from __future__ import annotations

import threading

from PySide6.QtCore import QThread


def test_result_and_error_arrive_on_the_gui_thread(qtbot):
    from app.ui.common.tasks import TaskRunner

    runner = TaskRunner(2)
    seen: list = []
    gui = QThread.currentThread()
    runner.run(lambda: 21 * 2, lambda result: seen.append(("done", result, QThread.currentThread() is gui)))
    runner.run(
        lambda: open("/nonexistent/file"),  # noqa: SIM115 - it must fail to open
        None,
        lambda kind, message: seen.append(("failed", kind, "/nonexistent/file" in message)),
    )
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=10_000)
    assert sorted(seen) == [("done", 42, True), ("failed", "error", True)]
    assert runner.active == 0


def test_a_cancelled_result_is_dropped(qtbot):
    from app.ui.common.tasks import TaskRunner

    runner = TaskRunner(1)
    release = threading.Event()
    seen: list = []
    stale = runner.run(lambda: release.wait(10) and "stale", seen.append)
    queued = runner.run(lambda: "queued", seen.append)
    runner.cancel(stale)
    runner.cancel(queued)
    fresh = runner.run(lambda: "fresh", seen.append)
    release.set()
    qtbot.waitUntil(lambda: seen == ["fresh"], timeout=10_000)
    assert runner.wait(10_000) and fresh not in (stale, queued)
    qtbot.wait(50)  # let any queued signal of the stale tasks arrive: they must still be dropped
    assert seen == ["fresh"] and runner.active == 0


def test_cancel_all_forgets_queued_tasks_and_a_running_task_sees_it(qtbot):
    from app.ui.common.tasks import TaskRunner

    runner = TaskRunner(1)
    started, saw_cancel = threading.Event(), threading.Event()
    progress: list = []

    def long_task(report):
        report("started")
        started.set()
        while not report.cancelled:
            threading.Event().wait(0.01)
        saw_cancel.set()
        return "finished anyway"

    ran: list = []
    seen: list = []
    runner.run(long_task, seen.append, None, progress.append)
    runner.run(lambda: ran.append("queued"), seen.append)
    assert started.wait(10)
    runner.cancel_all()
    assert saw_cancel.wait(10) and runner.wait(10_000)
    qtbot.wait(50)
    assert seen == [] and ran == [] and runner.active == 0
