"""Render a picture with the real worker and the tiny model, then save a screenshot.

    .venv/bin/python tests/ui/make_screenshot.py [docs/generate-tab.png]

Offscreen, in a throw-away LORALOOM_HOME; not a test (pytest does not collect it).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "generate-tab.png")
    home = Path(tempfile.mkdtemp(prefix="loraloom-shot-"))
    os.environ["LORALOOM_HOME"] = str(home)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    # The pre-trained tiny fixture draws colours that follow the prompt (a random one draws noise).
    model = ROOT / "tests" / "fixtures" / "tiny-sd1-pretrained"

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.ui.main_window import MainWindow

    app = QApplication([])
    window = MainWindow()
    window.resize(1280, 900)
    window.show()
    tab = window.generate_tab
    tab.model_picker.setText(str(model))
    tab.prompt.setPlainText("a red square")
    tab.negative.setPlainText("blue")
    tab.width_box.setValue(64)
    tab.height_box.setValue(64)
    tab.steps.setValue(20)
    tab.seed_lock.setChecked(True)
    tab.seed.setValue(1234)

    def save(state: str) -> None:
        # Let the last status updates paint before grabbing.
        QTimer.singleShot(300, lambda: (window.grab().save(str(out)), print(f"{state}: saved {out}"), window.close()))

    window.generate_ops.finished.connect(save)
    tab.generate()
    QTimer.singleShot(300_000, app.quit)  # a safety net, not expected
    app.exec()
    return 0 if out.exists() else 1


if __name__ == "__main__":
    sys.exit(main())
