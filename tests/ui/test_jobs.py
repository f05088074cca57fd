"""JobTracker turns protocol events into per-job state and signals (no process needed)."""

from __future__ import annotations

from app.core.events import Phase
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
    tracker.handle_event(
        {"type": "model", "job": "j1", "base": "/m", "family": "sd1", "device": "cpu", "dtype": "fp32"}
    )
    assert models == [{"base": "/m", "family": "sd1", "device": "cpu", "dtype": "fp32", "distilled": False}]
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
    tracker.handle_event(
        {
            "type": "progress",
            "job": "t1",
            "step": 3,
            "total": 8,
            "eta_s": None,
            "message": "caching latents 3/8",
            "phase": "caching",
        }
    )
    job = tracker.get("t1")
    assert (job.step, job.total, job.message) == (0, 0, "caching latents 3/8")
    tracker.handle_event(
        {
            "type": "progress",
            "job": "t1",
            "step": 1,
            "total": 100,
            "eta_s": 9.0,
            "loss": 0.1,
            "lr": 1e-4,
            "phase": "training",
        }
    )
    assert (job.step, job.total) == (1, 100)


def test_a_handle_carries_its_jobs_typed_events_only(qtbot):
    from app.core.events import ArtifactKind, ArtifactSaved, ImageReady, LogLevel, LogLine, Progress

    client = WorkerClient(["unused"])
    tracker = JobTracker(client)
    client.submit = lambda job: job["id"]  # the wire is not under test here: no process
    handle = tracker.submit("caption", {"id": "c1", "folder": "/d"})
    other = tracker.submit("caption", {"id": "c2", "folder": "/e"})
    assert handle.id == "c1" and tracker.handle("c1") is handle and tracker.get("c1").params == {"folder": "/d"}
    seen: list = []
    handle.stateChanged.connect(lambda state: seen.append(state))
    for signal in (handle.progress, handle.image, handle.artifact, handle.log):
        signal.connect(seen.append)
    handle.finished.connect(lambda state, error: seen.append((state, error)))
    other.progress.connect(lambda ev: seen.append(("other", ev)))

    tracker.handle_event({"type": "accepted", "job": "c1"})
    tracker.handle_event({"type": "progress", "job": "c1", "step": 1, "total": 3, "eta_s": 2, "phase": "captioning"})
    tracker.handle_event({"type": "image", "job": "c1", "path": "/x.png", "step": 1, "meta": {}})
    tracker.handle_event({"type": "artifact", "job": "c1", "path": "/d/a.txt", "kind": "caption", "image": "/d/a.png"})
    tracker.handle_event({"type": "artifact", "job": "c1", "path": "/d/b.txt", "kind": "sculpture"})  # unreadable
    tracker.handle_event({"type": "log", "job": "c1", "level": "warning", "message": "skipped b.png"})
    tracker.handle_event({"type": "finished", "job": "c1", "status": "done"})
    tracker.handle_event({"type": "progress", "job": "c1", "step": 2, "total": 3})  # after the end: dropped

    assert seen == [
        JobState.QUEUED,
        JobState.RUNNING,
        Progress(step=1, total=3, phase=Phase.CAPTIONING, eta_s=2.0),
        ImageReady("/x.png", step=1),
        ArtifactSaved("/d/a.txt", ArtifactKind.CAPTION, details={"image": "/d/a.png"}),
        LogLine("skipped b.png", LogLevel.WARNING),
        JobState.DONE,
        (JobState.DONE, None),
    ]


def test_a_worker_that_cannot_start_fails_the_handles_job_with_a_sentence(qtbot):
    """``connect`` runs before the job is sent, so even a finish during submit() reaches the handle."""
    client = WorkerClient(["/nonexistent/loraloom-worker"])
    tracker = JobTracker(client)
    finished: list = []
    handle = tracker.submit(
        "generate",
        {"prompt": "a fox"},
        connect=lambda h: h.finished.connect(lambda state, error: finished.append((state, error))),
    )
    qtbot.waitUntil(lambda: bool(finished), timeout=10_000)
    state, error = finished[0]
    assert state is JobState.FAILED and tracker.get(handle.id).state is JobState.FAILED
    assert "could not be started" in error.message
    client.shutdown(wait=True)
