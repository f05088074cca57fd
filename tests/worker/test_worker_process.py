"""The real worker process, driven through the JSON-lines protocol."""

from __future__ import annotations

import json
import signal
import struct
import time
from pathlib import Path

import pytest
from PIL import Image
from worker_process import WorkerProcess

from app.core.events import ImageReady, Phase, Progress
from app.core.pngmeta import parse_parameters
from app.worker import protocol as P

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    home = tmp_path_factory.mktemp("worker-home")
    w = WorkerProcess(env={"LORALOOM_HOME": str(home)})
    hello = w.next_event(timeout=60)
    assert hello["type"] == "hello", hello
    w.hello = hello
    yield w
    assert w.close() == 0


def gen_job(job_id: str, base: Path, **overrides) -> dict:
    job = {
        "id": job_id,
        "kind": "generate",
        "base": str(base),
        "prompt": "a red cat",
        "width": 64,
        "height": 64,
        "steps": 3,
        "seed": 7,
    }
    job.update(overrides)
    return job


def test_hello_describes_the_device(worker):
    assert worker.hello["device"] == "cpu"
    assert worker.hello["torch"].startswith("2.")
    assert worker.hello["protocol"] == P.PROTOCOL_VERSION
    assert worker.hello["job"] is None


def test_malformed_lines_are_logged_and_ignored(worker):
    for bad in (
        "garbage\n",
        "[1, 2]\n",
        '{"cmd": "explode"}\n',
        '{"cmd": "submit", "job": {"kind": "generate"}}\n',
        "\n",
        '{"cmd":"submit","job":{"id":"x","kind":"nope"}}\n',
    ):
        worker.send(bad)
    worker.send(P.ping())
    pong, before = worker.wait_for(lambda e: e["type"] == "pong", timeout=30)
    assert before == []  # nothing was accepted from the bad lines
    # stderr is read by its own thread: the log line may land just after the pong.
    deadline = time.monotonic() + 10
    while not any("malformed command" in line for line in worker.stderr) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any("malformed command" in line for line in worker.stderr)


def test_generate_writes_png_and_keeps_the_model_loaded(worker, tiny_sd1, tmp_path):
    done, events = worker.run_job(gen_job("g1", tiny_sd1, output_dir=str(tmp_path)))
    assert done["status"] == "done", done
    types = [e["type"] for e in events]
    assert types[0] == "accepted"
    assert "model" in types
    steps = [e["step"] for e in events if e["type"] == "progress" and e["step"] > 0]
    assert steps == [1, 2, 3]
    image = next(e for e in events if e["type"] == "image")
    path = Path(image["path"])
    assert path.is_file() and path.parent.parent == tmp_path
    with Image.open(path) as im:
        assert im.size == (64, 64)
        params = parse_parameters(im.text["parameters"])
    assert params["prompt"] == "a red cat" and params["seed"] == 7 and params["steps"] == 3
    assert image["meta"]["seed"] == 7

    # Same base again: no reload (no "model" event), and the same seed gives the same picture.
    done2, events2 = worker.run_job(gen_job("g2", tiny_sd1, output_dir=str(tmp_path)))
    assert done2["status"] == "done"
    assert "model" not in [e["type"] for e in events2]
    image2 = next(e for e in events2 if e["type"] == "image")
    with Image.open(path) as a, Image.open(image2["path"]) as b:
        assert a.tobytes() == b.tobytes()


def test_jobs_report_typed_events_with_their_phase(worker, tiny_sd1, tmp_path):
    done, events = worker.run_job({"id": "l1", "kind": "load_model", "base": str(tiny_sd1)})
    assert done["status"] == "done", done
    typed = [P.typed_event(e)[1] for e in events]
    assert [ev.phase for ev in typed if isinstance(ev, Progress)] == [Phase.LOADING]
    assert any(isinstance(ev, P.ModelLoaded) and ev.family == "sd1" for ev in typed)

    done, events = worker.run_job(gen_job("p1", tiny_sd1, output_dir=str(tmp_path)))
    assert P.typed_event(done) == ("p1", P.Finished(P.JobStatus.DONE))
    typed = [P.typed_event(e)[1] for e in events]
    assert [(ev.step, ev.phase) for ev in typed if isinstance(ev, Progress) and ev.step > 0] == [
        (1, Phase.RENDERING),
        (2, Phase.RENDERING),
        (3, Phase.RENDERING),
    ]
    image = next(ev for ev in typed if isinstance(ev, ImageReady))
    assert Path(image.path).is_file() and image.meta["seed"] == 7


def _expect_failure(worker, job, kind: str, needle: str):
    done, _ = worker.run_job(job)
    assert done["status"] == "failed", done
    assert done["error"]["kind"] == kind, done
    assert needle in done["error"]["message"], done
    return done


def test_bad_models_fail_with_the_path_and_the_worker_lives_on(worker, tiny_sd1, tmp_path):
    missing = tmp_path / "no-such-model"
    _expect_failure(worker, gen_job("b1", missing), "model_not_found", str(missing))

    not_model = tmp_path / "holiday-photos"
    not_model.mkdir()
    (not_model / "a.txt").write_text("hello")
    _expect_failure(worker, gen_job("b2", not_model), "bad_input", str(not_model))

    # A checkpoint cut off in the middle of its tensor data (an interrupted download).
    header = json.dumps(
        {
            "model.diffusion_model.x": {"dtype": "F32", "shape": [1024], "data_offsets": [0, 4096]},
            "cond_stage_model.transformer.y": {"dtype": "F32", "shape": [1], "data_offsets": [4096, 4100]},
        }
    )
    truncated = tmp_path / "model.safetensors"
    truncated.write_bytes(struct.pack("<Q", len(header)) + header.encode() + b"\0" * 100)
    done = _expect_failure(worker, gen_job("b3", truncated), "bad_input", str(truncated))
    assert "truncated" in done["error"]["message"]

    not_safetensors = tmp_path / "junk.safetensors"
    not_safetensors.write_bytes(b"this is not a model at all, just text")
    _expect_failure(worker, gen_job("b4", not_safetensors), "bad_input", str(not_safetensors))

    _expect_failure(worker, gen_job("b5", tiny_sd1, steps=0), "bad_input", "steps")

    done, _ = worker.run_job(gen_job("b6", tiny_sd1, output_dir=str(tmp_path)))
    assert done["status"] == "done"


def test_cancel_stops_within_a_step_and_cancels_queued_jobs(worker, tiny_sd1, tmp_path):
    total = 400
    worker.send(P.submit(gen_job("c1", tiny_sd1, steps=total, width=128, height=128, output_dir=str(tmp_path))))
    worker.send(P.submit(gen_job("c2", tiny_sd1, output_dir=str(tmp_path))))
    worker.wait_for(lambda e: e["type"] == "progress" and e["job"] == "c1" and e["step"] >= 2)
    worker.send(P.cancel("c2"))  # queued: dropped at once
    c2, _ = worker.wait_for(lambda e: e["type"] == "finished" and e["job"] == "c2", timeout=30)
    assert c2["status"] == "cancelled"
    worker.send(P.cancel("c1"))
    c1, after = worker.wait_for(lambda e: e["type"] == "finished" and e["job"] == "c1", timeout=30)
    assert c1["status"] == "cancelled"
    last_step = max([e["step"] for e in after if e["type"] == "progress"], default=0)
    assert last_step < total
    assert not any(e["type"] == "image" for e in after)
    # Steps that ran after the cancel command arrived: the one in flight, plus what the pipe held.
    assert sum(1 for e in after if e["type"] == "progress") <= 3


def test_unimplemented_job_kind_fails_cleanly(worker):
    done, _ = worker.run_job({"id": "t1", "kind": "train"})
    assert done["status"] == "failed" and done["error"]["kind"] == "bad_input"


def test_stdout_carries_protocol_lines_only(worker):
    worker.send(P.ping())
    worker.wait_for(lambda e: e["type"] == "pong", timeout=30)
    for line in worker.raw_stdout:
        P.parse_event(line)


def test_sigkill_leaves_finished_files_intact(tiny_sd1, tmp_path):
    w = WorkerProcess(env={"LORALOOM_HOME": str(tmp_path / "home")})
    try:
        assert w.next_event(60)["type"] == "hello"
        done, events = w.run_job(gen_job("k1", tiny_sd1, output_dir=str(tmp_path)))
        first = Path(next(e for e in events if e["type"] == "image")["path"])
        w.send(P.submit(gen_job("k2", tiny_sd1, steps=400, width=128, height=128, output_dir=str(tmp_path))))
        w.wait_for(lambda e: e["type"] == "progress" and e["job"] == "k2" and e["step"] >= 1)
        w.proc.send_signal(signal.SIGKILL)
        assert w.proc.wait(timeout=10) == -signal.SIGKILL
        with Image.open(first) as im:
            im.load()
        # No half-written picture or temp file is left behind.
        assert sorted(p.name for p in first.parent.iterdir()) == [first.name]
    finally:
        w.close()
