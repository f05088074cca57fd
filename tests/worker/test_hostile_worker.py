"""Through the real worker process: a skipped picture is a warning log event, and a run folder
holding a pickle state is refused as bad input with its sentence (no code runs)."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from train_helpers import PicklePayload, small_config, write_images, write_undecodable_png
from worker_process import WorkerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    home = tmp_path_factory.mktemp("hostile-worker-home")
    w = WorkerProcess(env={"LORALOOM_HOME": str(home), "OMP_NUM_THREADS": "1"})
    hello = w.next_event(timeout=120)
    assert hello["type"] == "hello", hello
    yield w
    assert w.close() == 0


def test_a_skipped_picture_is_a_warning_and_a_pickled_state_is_refused(worker, tiny_sd1, tmp_path):
    folder = write_images(tmp_path / "ds" / "1_sks", sizes=((64, 64),) * 2)
    write_undecodable_png(folder / "broken.png")
    config = small_config(tiny_sd1, tmp_path / "ds", name="w", steps=2, output={"save_every": 1})
    done, events = worker.run_job({"id": "h1", "kind": "train", "config": config.to_dict()}, timeout=240)
    assert done["status"] == "done", done
    warnings = [e["message"] for e in events if e["type"] == "log" and e["level"] == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith(f"skipped {folder / 'broken.png'}: ")
    run_dir = next(e["path"] for e in events if e["type"] == "artifact" and e["kind"] == "run")

    marker = tmp_path / "owned"
    state = Path(run_dir) / "state"
    (state / "optimizer.safetensors").unlink()
    (state / "optimizer.pt").write_bytes(pickle.dumps({"state": PicklePayload(marker)}))
    done, _ = worker.run_job({"id": "h2", "kind": "train", "resume": run_dir}, timeout=240)
    assert done["status"] == "failed" and done["error"]["kind"] == "bad_input"
    assert done["error"]["message"].startswith(f"{state / 'optimizer.pt'}: resume state in the old pickle format")
    assert not marker.exists()
