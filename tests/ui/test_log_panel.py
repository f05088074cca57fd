"""The log panel: one timestamp, short job ids, each line in its own level's colour, wrapping,
Copy and Save log…."""

from __future__ import annotations

import re

from PySide6.QtWidgets import QApplication, QFileDialog, QPlainTextEdit

from app.ui.widgets.log_panel import LogPanel

JOB = "3f2a9c0d41b24e6f8a7b6c5d4e3f2a1b"
STAMP = r"\d\d:\d\d:\d\d"


def _panel(qtbot) -> LogPanel:
    panel = LogPanel()
    qtbot.addWidget(panel)
    return panel


def test_worker_lines_keep_one_timestamp_and_their_level(qtbot):
    panel = _panel(qtbot)
    panel.append_worker_line(f"2026-12-01 21:40:02,123 WARNING app.engine.models: job {JOB}: slow disk")
    line = panel.text().splitlines()[0]
    assert re.fullmatch(rf"{STAMP} worker app\.engine\.models: job 3f2a9c0d: slow disk", line), line
    assert panel.line_colours() == ["#b36b00"]


def test_an_info_line_after_a_traceback_is_not_red(qtbot):
    panel = _panel(qtbot)
    normal = panel.palette().text().color().name()
    panel.append_worker_line("2026-12-01 21:40:02,123 INFO app.worker: ready")
    for text in ["Traceback (most recent call last):", '  File "x.py", line 1, in <module>', "ValueError: boom"]:
        panel.append_worker_line(text)
    panel.append_worker_line("2026-12-01 21:40:03,000 INFO app.worker: restarted")
    panel.append_app_message("info", "worker ready: device cpu")
    panel.append_job(JOB, "info", "rendering")
    red = "#c62828"
    assert panel.line_colours() == [normal, red, red, red, normal, normal, normal]
    assert panel.text().splitlines()[-1].endswith("job    3f2a9c0d: rendering")


def test_lines_wrap_and_copy_and_save_give_the_text(qtbot, tmp_path, monkeypatch):
    panel = _panel(qtbot)
    view = panel.findChild(QPlainTextEdit)
    assert view.lineWrapMode() is QPlainTextEdit.LineWrapMode.WidgetWidth
    panel.append_app_message("info", "first")
    panel.append_app_message("error", "second")
    panel.copy_button.click()
    assert QApplication.clipboard().text() == panel.text() and "second" in panel.text()
    target = tmp_path / "log.txt"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    panel.save_button.click()
    saved = target.read_text(encoding="utf-8").splitlines()
    assert [s.split(" ", 1)[1] for s in saved] == ["app    first", "app    second"]
    assert panel.text().splitlines()[-1].endswith(f"log saved to {target}")
