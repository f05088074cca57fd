"""JobTracker turns protocol events into per-job state and signals (no process needed)."""

from __future__ import annotations

from app.ui.jobs import JobError, JobState, JobTracker
from app.ui.worker_client import WorkerClient


def _tracker_with_job(job_id: str = "j1") -> tuple[JobTracker, WorkerClient]:
    client = WorkerClient(["unused"])
    tracker = JobTracker(client)
    client.jobSubmitted.emit({"id": job_id, "kind": "generate", "prompt": "a fox"})
    return tracker, client


def test_job_goes_through_its_states_and_signals(qtbot):
    tracker, _client = _tracker_with_job()
    states: list[tuple[str, str]] = []
    progress: list[tuple] = []
    images: list[tuple] = []
    finished: list[tuple] = []
    tracker.stateChanged.connect(lambda job, state: states.append((job, state)))
    tracker.progressChanged.connect(lambda *args: progress.append(args))
    tracker.imageReady.connect(lambda *args: images.append(args))
    tracker.jobFinished.connect(lambda *args: finished.append(args))

    job = tracker.get("j1")
    assert job.kind == "generate" and job.params == {"prompt": "a fox"}
    assert job.state is JobState.SUBMITTED
    tracker.handle_event({"type": "accepted", "job": "j1"})
    tracker.handle_event({"type": "progress", "job": "j1", "step": 2, "total": 4, "eta_s": 1.5})
    tracker.handle_event({"type": "progress", "job": "j1", "step": 0, "total": 4, "eta_s": None, "message": "loading"})
    tracker.handle_event({"type": "image", "job": "j1", "path": "/x.png", "meta": {"seed": 3}})
    tracker.handle_event({"type": "finished", "job": "j1", "status": "done"})

    assert states == [("j1", "queued"), ("j1", "running"), ("j1", "done")]
    assert progress == [("j1", 2, 4, 1.5, ""), ("j1", 0, 4, None, "loading")]
    assert images == [("j1", "/x.png", {"seed": 3})]
    assert finished == [("j1", "done", None)]
    assert job.images == ["/x.png"] and job.last_meta == {"seed": 3}
    assert tracker.active() == []


def test_failure_keeps_the_error_and_later_events_are_ignored(qtbot):
    tracker, _client = _tracker_with_job()
    finished: list[tuple] = []
    tracker.jobFinished.connect(lambda *args: finished.append(args))
    error = {"kind": "out_of_memory", "message": "CUDA out of memory", "detail": "trace"}
    tracker.handle_event({"type": "finished", "job": "j1", "status": "failed", "error": error})
    tracker.handle_event({"type": "finished", "job": "j1", "status": "done"})  # a late duplicate
    assert finished == [("j1", "failed", JobError("out_of_memory", "CUDA out of memory", "trace"))]
    assert tracker.get("j1").state is JobState.FAILED


def test_events_for_unknown_jobs_and_model_events(qtbot):
    tracker, _client = _tracker_with_job()
    models: list[dict] = []
    tracker.modelChanged.connect(models.append)
    tracker.handle_event({"type": "progress", "job": "nobody", "step": 1, "total": 2})
    tracker.handle_event({"type": "model", "job": "j1", "base": "/m", "family": "sd1", "device": "cpu", "dtype": "fp32"})
    assert models == [{"base": "/m", "family": "sd1", "device": "cpu", "dtype": "fp32"}]
    assert tracker.model["family"] == "sd1"
    assert [job.id for job in tracker.jobs()] == ["j1"]


def test_old_finished_jobs_are_forgotten(qtbot):
    client = WorkerClient(["unused"])
    tracker = JobTracker(client)
    tracker.KEEP_FINISHED = 3
    for i in range(6):
        client.jobSubmitted.emit({"id": f"j{i}", "kind": "generate"})
        tracker.handle_event({"type": "finished", "job": f"j{i}", "status": "done"})
    client.jobSubmitted.emit({"id": "last", "kind": "generate"})
    assert [job.id for job in tracker.jobs()] == ["j3", "j4", "j5", "last"]


def test_a_training_jobs_caching_progress_does_not_count_as_its_steps(qtbot):
    """Caching counts pictures (phase "caching"): the job's step/total, which the window title's
    percentage reads, stay those of its training steps."""
    tracker, _client = _tracker_with_job("t1")
    tracker.handle_event({"type": "progress", "job": "t1", "step": 3, "total": 8, "eta_s": None,
                          "message": "caching latents 3/8", "phase": "caching"})
    job = tracker.get("t1")
    assert (job.step, job.total, job.message) == (0, 0, "caching latents 3/8")
    tracker.handle_event({"type": "progress", "job": "t1", "step": 1, "total": 100, "eta_s": 9.0, "loss": 0.1,
                          "lr": 1e-4, "phase": "training"})
    assert (job.step, job.total) == (1, 100)
