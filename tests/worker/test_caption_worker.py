"""The ``caption`` job through the real worker process, and ``loraloom caption`` on the tiny stand-ins."""

from __future__ import annotations

from pathlib import Path

import pytest
from dataset_files import make_bad_dataset
from PIL import Image
from worker_process import WorkerProcess

from app.cli import main


def _flat(path, color):
    Image.new("RGB", (300, 300), color).save(path)


@pytest.fixture
def worker():
    w = WorkerProcess()
    w.wait_for(lambda e: e["type"] == "hello")
    yield w
    w.close()


def test_worker_caption_job_fills_missing_captions_with_prefix_and_reports_skips(worker, tiny_blip, tiny_wd, tmp_path):
    ds = tmp_path / "ds"
    make_bad_dataset(ds)
    job = {
        "id": "c1",
        "kind": "caption",
        "folder": str(ds),
        "model": str(tiny_blip),
        "prefix": "sks",
        "batch_size": 4,
        "max_new_tokens": 6,
    }
    done, seen = worker.run_job(job)
    assert done["status"] == "done", done
    artifacts = [e for e in seen if e["type"] == "artifact"]
    assert artifacts and all(a["kind"] == "caption" and a["previous"] == "" for a in artifacts)
    for a in artifacts:
        text = Path(a["path"]).read_text(encoding="utf-8")
        assert text == a["caption"] and text.startswith("sks, ")
    assert (ds / "good.txt").read_text() == "a red square, solo"
    warnings = [e for e in seen if e["type"] == "log" and e.get("level") == "warning"]
    assert {Path(e["image"]).name for e in warnings} >= {"zero.png", "bomb.png", "cut_jpeg.jpg", "notes.jpg"}
    progress = [e for e in seen if e["type"] == "progress"]
    assert progress[-1]["step"] == progress[-1]["total"] == len(artifacts)
    assert any(e["type"] == "log" and "loaded BLIP" in e["message"] for e in seen)

    # a second run keeps the loaded model and, in fill mode, has nothing left to do
    done, seen = worker.run_job(dict(job, id="c2"))
    assert done["status"] == "done"
    assert not any(e["type"] == "artifact" for e in seen)
    assert not any(e["type"] == "log" and "loaded" in e["message"] for e in seen)

    # the tagger in replace mode on a selection, then cancel a long run
    _flat(ds / "red.png", (250, 0, 0))
    done, seen = worker.run_job(
        {
            "id": "c3",
            "kind": "caption",
            "folder": str(ds),
            "model": str(tiny_wd),
            "mode": "replace",
            "files": [str(ds / "red.png")],
        }
    )
    assert done["status"] == "done"
    assert [Path(e["image"]).name for e in seen if e["type"] == "artifact"] == ["red.png"]
    assert (ds / "red.txt").read_text().startswith("red, ")


def test_worker_caption_job_cancel_and_bad_model(worker, tiny_blip, tmp_path):
    for i in range(40):
        _flat(tmp_path / f"{i:02d}.png", (i * 6, 0, 0))
    worker.send(
        {
            "cmd": "submit",
            "job": {
                "id": "long",
                "kind": "caption",
                "folder": str(tmp_path),
                "model": str(tiny_blip),
                "batch_size": 1,
                "max_new_tokens": 20,
            },
        }
    )
    worker.wait_for(lambda e: e["type"] == "artifact" and e["job"] == "long")
    worker.send({"cmd": "cancel", "id": "long"})
    done, _ = worker.wait_for(lambda e: e["type"] == "finished" and e["job"] == "long")
    assert done["status"] == "cancelled"
    written = len(list(tmp_path.glob("*.txt")))
    assert 1 <= written < 40

    done, _ = worker.run_job(
        {"id": "bad", "kind": "caption", "folder": str(tmp_path), "model": str(tmp_path / "no-such-model")}
    )
    assert done["status"] == "failed" and done["error"]["kind"] == "model_not_found"
    assert "no such model folder" in done["error"]["message"]
    done, _ = worker.run_job(
        {"id": "bad2", "kind": "caption", "folder": str(tmp_path / "nope"), "model": str(tiny_blip)}
    )
    assert done["status"] == "failed" and done["error"]["kind"] == "bad_input"
    assert "no such folder" in done["error"]["message"]


def test_cli_caption_fill_mode_with_prefix(tiny_wd, tmp_path, capsys):
    _flat(tmp_path / "a.png", (0, 0, 250))
    _flat(tmp_path / "b.png", (0, 250, 0))
    (tmp_path / "b.txt").write_text("hand written")
    (tmp_path / "c.png").write_bytes(b"")
    rc = main(
        ["caption", str(tmp_path), "--model", str(tiny_wd), "--prefix", "sks", "--batch-size", "2", "--max-tags", "3"]
    )
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert (tmp_path / "a.txt").read_text() == "sks, blue, simple background, no humans"
    assert (tmp_path / "b.txt").read_text() == "hand written"
    assert not (tmp_path / "c.txt").exists()
    assert "c.png: the file is empty" in captured.err
    assert "1 of 1 captioned, 1 already had a caption, 1 skipped" in captured.out


def test_cli_caption_errors_are_one_line(tmp_path, capsys):
    assert main(["caption", str(tmp_path), "--model", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("loraloom: error: ") and "no such model folder" in err
    assert "Traceback" not in err
    assert main(["caption", str(tmp_path), "--batch-size", "0"]) == 1
    assert "batch_size" in capsys.readouterr().err


def test_cli_caption_reports_each_skipped_file_once(tiny_wd, tmp_path):
    """A real process (pytest's own log capture would hide a second, logged copy of the line)."""
    import subprocess
    import sys

    _flat(tmp_path / "a.png", (0, 0, 250))
    (tmp_path / "c.png").write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "caption", str(tmp_path), "--model", str(tiny_wd)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("c.png") == 1, done.stderr
