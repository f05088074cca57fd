"""Train the tiny model with the real worker and save a screenshot of the Train tab mid-run.

    .venv/bin/python tests/ui/train/make_train_screenshot.py [docs/train-tab.png]

Offscreen, in a throw-away LORALOOM_HOME; uses the pre-trained tiny SD1 fixture when it
exists (its samples show colours), else a fresh random tiny model. Not a test (pytest
does not collect it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
STEPS = 400
SHOT_AT = 300  # the step at which the picture is taken
COLOURS = {"red": (210, 40, 40), "orange": (230, 140, 30)}


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "docs" / "train-tab.png")
    home = Path(tempfile.mkdtemp(prefix="loraloom-train-shot-"))
    os.environ["LORALOOM_HOME"] = str(home)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, str(ROOT))
    model = ROOT / "tests" / "fixtures" / "tiny-sd1-pretrained"
    if not (model / "model_index.json").is_file():
        model = home / "models" / "tiny-sd1"
        # Written in another process: this one is a GUI and stays torch-free.
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"from app.engine.tiny import write_tiny_model; write_tiny_model({str(model)!r}, family='sd1', seed=0)",
            ],
            check=True,
            cwd=ROOT,
        )
    from PIL import Image, ImageDraw

    dataset = home / "pictures" / "4_sks ball"
    dataset.mkdir(parents=True)
    for name, colour in COLOURS.items():
        for j in range(3):
            picture = Image.new("RGB", (64, 64), (235, 235, 235))
            ImageDraw.Draw(picture).ellipse((8 + 4 * j, 8, 56 - 4 * j, 56), fill=colour)
            picture.save(dataset / f"{name}{j}.png")
            (dataset / f"{name}{j}.txt").write_text(f"sks ball, {name}", encoding="utf-8")

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.ui.main_window import MainWindow
    from app.ui.worker_client import WorkerClient

    app = QApplication([])
    window = MainWindow(WorkerClient(env={"OMP_NUM_THREADS": "1"}))
    window.resize(1280, 860)
    window.show()
    window.log_dock.hide()
    tab = window.train_tab
    window.tabs.setCurrentWidget(tab)
    form = tab.form
    form.preset.setCurrentIndex(form.preset.findData(""))  # (none): a 64 px run is no preset's size
    form.model_picker.setText(str(model))
    form.datasets.use_folder(str(dataset), replace=True)
    values = {
        "name": "sks ball",
        "trigger": "sks ball",
        "steps": STEPS,
        "seed": 7,
        "network.rank": 8,
        "network.alpha": 8.0,
        "optimizer.learning_rate": 2e-3,
        "optimizer.schedule": "cosine",
        "optimizer.warmup_steps": 20,
        "data.resolution": 64,
        "data.min_bucket": 64,
        "data.max_bucket": 128,
        "data.min_image_side": 32,
        "data.batch_size": 2,
        "sample.prompts": ["{trigger}, red", "{trigger}, orange", "{trigger}"],
        "sample.every": 100,
        "sample.steps": 8,
        "sample.negative": "",
        "output.save_every": 100,
    }
    for key, value in values.items():
        form.fields[key].set(value)
    taken = {"done": False}

    def check() -> None:
        entry = tab.ops.current
        if entry is not None and entry.step >= SHOT_AT and len(tab.gallery.loaded()) >= 9 and not taken["done"]:
            taken["done"] = True
            tab.views.setCurrentWidget(tab.gallery)
            QTimer.singleShot(400, shoot)

    def shoot() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(out))
        print(f"saved {out}")
        tab.ops.stop()
        tab.ops.stop()
        QTimer.singleShot(500, window.close)
        QTimer.singleShot(800, app.quit)

    timer = QTimer()
    timer.timeout.connect(check)
    timer.start(200)
    QTimer.singleShot(1000, lambda: tab.start() or (print(form.error_label.text()), app.quit()))
    QTimer.singleShot(600_000, app.quit)  # a safety net, not expected
    app.exec()
    return 0 if taken["done"] and out.exists() else 1


if __name__ == "__main__":
    raise SystemExit(main())
