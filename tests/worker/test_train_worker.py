"""The worker's train job, driven through the real worker process and its protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
from train_helpers import small_config
from worker_process import WorkerProcess

from app.core.safetensors_header import read_header
from app.worker import protocol as P

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    home = tmp_path_factory.mktemp("train-worker-home")
    w = WorkerProcess(env={"LORALOOM_HOME": str(home), "OMP_NUM_THREADS": "1"})
    hello = w.next_event(timeout=120)
    assert hello["type"] == "hello", hello
    yield w
    assert w.close() == 0


def test_train_job_reports_progress_samples_and_saved_files(worker, tiny_sd1, red_dataset):
    config = small_config(
        tiny_sd1, red_dataset, name="job", steps=3, sample={"every": 3, "prompts": ["{trigger}, red"], "steps": 2}
    )
    done, events = worker.run_job({"id": "t1", "kind": "train", "config": config.to_dict()}, timeout=240)
    assert done["status"] == "done", done
    run = [e for e in events if e["type"] == "artifact" and e["kind"] == "run"]
    assert len(run) == 1 and Path(run[0]["path"]).is_dir()
    steps = [e for e in events if e["type"] == "progress" and "loss" in e]
    assert [e["step"] for e in steps] == [1, 2, 3]
    assert all(e["total"] == 3 and e["lr"] > 0 and e["eta_s"] >= 0 for e in steps)
    assert all(e["phase"] == "training" for e in steps)
    caching = [e for e in events if e["type"] == "progress" and e.get("phase") == "caching"]
    assert [(e["step"], e["total"], e["message"]) for e in caching] == [
        (i, 4, f"caching latents {i}/4") for i in range(1, 5)
    ]
    images = [e for e in events if e["type"] == "image"]
    assert len(images) == 1 and Path(images[0]["path"]).is_file() and images[0]["step"] == 3
    assert images[0]["meta"]["prompt"] == "sks, red"
    saved = [(e["kind"], e["step"]) for e in events if e["type"] == "artifact" and e["kind"] != "run"]
    assert saved == [("checkpoint", 2), ("adapter", 3)]
    final = next(e["path"] for e in events if e["type"] == "artifact" and e["kind"] == "adapter")
    assert read_header(final).metadata["ss_output_name"] == "job"


def test_train_job_runs_a_flux_config_and_saves_the_kohya_flux_file(worker, tiny_flux1, red_dataset):
    config = small_config(
        tiny_flux1,
        red_dataset,
        name="fluxjob",
        steps=2,
        fp8_base=True,
        flow={"timestep_sampling": "logit_normal"},
        sample={"every": 2, "prompts": ["{trigger}, red"], "steps": 2, "guidance": 3.5},
    )
    done, events = worker.run_job({"id": "f1", "kind": "train", "config": config.to_dict()}, timeout=240)
    assert done["status"] == "done", done
    assert [e["step"] for e in events if e["type"] == "progress" and "loss" in e] == [1, 2]
    images = [e for e in events if e["type"] == "image"]
    assert len(images) == 1 and Path(images[0]["path"]).is_file() and images[0]["meta"]["prompt"] == "sks, red"
    final = next(e["path"] for e in events if e["type"] == "artifact" and e["kind"] == "adapter")
    header = read_header(final)
    assert header.metadata["ss_base_model_version"] == "flux1"
    assert header.metadata["modelspec.architecture"] == "flux-1-dev/lora"
    assert any(k.startswith("lora_unet_double_blocks_0_img_attn_qkv.") for k in header.tensors)


def test_cancel_finishes_the_step_saves_and_the_run_resumes(worker, tiny_sd1, red_dataset):
    config = small_config(tiny_sd1, red_dataset, name="long", steps=500, output={"save_every": 0})
    worker.send(P.submit({"id": "t2", "kind": "train", "config": config.to_dict()}))
    first, _ = worker.wait_for(lambda e: e["job"] == "t2" and e["type"] == "progress" and "loss" in e, timeout=240)
    worker.send(P.cancel("t2"))
    done, events = worker.wait_for(lambda e: e["job"] == "t2" and e["type"] == "finished", timeout=120)
    assert done["status"] == "cancelled"
    checkpoint = [e for e in events if e["type"] == "artifact" and e["kind"] == "checkpoint"]
    assert len(checkpoint) == 1 and checkpoint[0]["step"] >= first["step"]
    stopped = checkpoint[0]["step"]
    run_dir = Path(checkpoint[0]["path"]).parents[1]
    assert Path(checkpoint[0]["path"]).is_file() and (run_dir / "state" / "trainer.json").is_file()
    more = small_config(tiny_sd1, red_dataset, name="long", steps=stopped + 1, output={"save_every": 0})
    done, events = worker.run_job(
        {"id": "t3", "kind": "train", "resume": str(run_dir), "config": more.to_dict()}, timeout=240
    )
    assert done["status"] == "done", done
    assert [e["step"] for e in events if e["type"] == "progress" and "loss" in e] == [stopped + 1]


def test_a_bad_train_job_fails_with_a_sentence(worker):
    done, _ = worker.run_job({"id": "t4", "kind": "train", "config": {"network": {"rank": 0}}}, timeout=60)
    assert done["status"] == "failed"
    assert done["error"]["kind"] == "bad_input"
    assert "rank = 0 must be between 1 and 1024" in done["error"]["message"]
    done, _ = worker.run_job({"id": "t5", "kind": "train", "resume": "/no/such/run"}, timeout=60)
    assert done["status"] == "failed" and "no such run folder" in done["error"]["message"]


def test_try_a_prompt_renders_in_the_running_job_without_a_reload(worker, tiny_sd1, red_dataset):
    config = small_config(tiny_sd1, red_dataset, name="try", steps=400, output={"save_every": 0})
    worker.send(P.submit({"id": "t6", "kind": "train", "config": config.to_dict()}))
    first, _ = worker.wait_for(lambda e: e["job"] == "t6" and e["type"] == "progress" and "loss" in e, timeout=240)
    worker.send(P.request("t6", P.RequestAction.TRY, prompt="{trigger} on a beach", seed=3))
    image, seen = worker.wait_for(lambda e: e["job"] == "t6" and e["type"] == "image", timeout=240)
    worker.send(P.cancel("t6"))
    done, rest = worker.wait_for(lambda e: e["job"] == "t6" and e["type"] == "finished", timeout=120)
    assert done["status"] == "cancelled"
    assert image["step"] >= first["step"] and Path(image["path"]).is_file()
    assert Path(image["path"]).name == f"try-step{image['step']:06d}-0.png"
    assert (image["meta"]["prompt"], image["meta"]["seed"], image["meta"]["training_step"]) == (
        "sks on a beach",
        3,
        image["step"],
    )
    events = seen + rest
    assert not [e for e in events if e["type"] == "model"]  # the model the run holds: nothing loaded again
    assert not [e for e in events if e["type"] == "progress" and e.get("phase") == "loading"]
