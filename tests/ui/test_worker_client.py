"""WorkerClient against the fake worker: lifecycle, events, bad lines, crashes, restart."""

from __future__ import annotations

import os
import signal
import time

from app.ui.worker_client import WorkerState, _LineBuffer


def _generate_job(**params) -> dict:
    job = {"kind": "generate", "base": "fake", "prompt": "a fox", "steps": 3, "width": 16, "height": 16, "seed": 7}
    job.update(params)
    return job


def test_line_buffer_keeps_partial_lines():
    buf = _LineBuffer()
    assert buf.feed(b'{"a":') == []
    assert buf.feed(b'1}\n{"b"') == [b'{"a":1}']
    assert buf.feed(b":2}\n\n") == [b'{"b":2}', b""]
    assert buf.flush() == []
    buf.feed(b"tail without newline")
    assert buf.flush() == [b"tail without newline"]


def test_start_hello_ping_and_graceful_shutdown(qtbot, make_client, event_log):
    client = make_client()
    states: list[str] = []
    client.stateChanged.connect(states.append)
    events = event_log(client)
    with qtbot.waitSignal(client.helloReceived, timeout=10_000) as hello:
        client.start()
    assert hello.args[0]["device"] == "cpu"
    assert client.state is WorkerState.READY
    assert client.hello["pid"] == client.pid()
    client.ping()
    qtbot.waitUntil(lambda: bool(events.of_type("pong")), timeout=5_000)

    crashes: list[str] = []
    client.crashed.connect(crashes.append)
    client.shutdown()
    qtbot.waitUntil(lambda: client.state is WorkerState.STOPPED, timeout=5_000)
    assert states == ["starting", "ready", "stopped"]
    assert crashes == []
    assert client.pid() is None


def test_lazy_start_and_job_events_with_split_lines(qtbot, make_client, event_log):
    client = make_client(FAKE_WORKER_SPLIT="1")  # every event arrives in two chunks
    events = event_log(client)
    submitted: list[dict] = []
    client.jobSubmitted.connect(submitted.append)
    assert client.state is WorkerState.STOPPED
    job_id = client.submit(_generate_job())
    assert len(job_id) == 32 and submitted[0]["id"] == job_id  # an id was made up
    assert client.state is WorkerState.STARTING
    qtbot.waitUntil(lambda: events.finished(job_id) is not None, timeout=10_000)
    types = [e["type"] for e in events.events if e.get("job") == job_id]
    assert types == ["accepted", "progress", "progress", "progress", "image", "finished"]
    assert events.finished(job_id)["status"] == "done"
    image = events.of_type("image", job_id)[0]
    assert os.path.exists(image["path"]) and image["meta"]["seed"] == 7
    assert client.state is WorkerState.READY
    assert client.open_jobs() == []


def test_given_job_id_is_kept(qtbot, make_client, event_log):
    client = make_client()
    events = event_log(client)
    assert client.submit(_generate_job(id="my-job")) == "my-job"
    qtbot.waitUntil(lambda: events.finished("my-job") is not None, timeout=10_000)


def test_malformed_stdout_lines_are_logged_and_ignored(qtbot, make_client, event_log):
    client = make_client(FAKE_WORKER_GARBAGE="1")
    events = event_log(client)
    logs: list[tuple[str, str]] = []
    client.logMessage.connect(lambda level, text: logs.append((level, text)))
    with qtbot.waitSignal(client.helloReceived, timeout=10_000):
        client.start()
    warnings = [text for level, text in logs if level == "warning"]
    assert len(warnings) == 2
    assert "not JSON" in warnings[0] and "this is not json" in warnings[0]
    assert "no-such-event" in warnings[1]
    assert [e["type"] for e in events.events] == ["hello"]  # nothing else got through
    job_id = client.submit(_generate_job())
    qtbot.waitUntil(lambda: events.finished(job_id) is not None, timeout=10_000)
    assert events.finished(job_id)["status"] == "done"


def test_stderr_lines_are_forwarded(qtbot, make_client):
    client = make_client()
    lines: list[str] = []
    client.stderrLine.connect(lines.append)
    client.start()
    qtbot.waitUntil(lambda: "fake worker: starting" in lines, timeout=10_000)
    assert client.stderr_tail()[0] == "fake worker: starting"


def test_worker_exit_fails_running_job_with_its_last_stderr_lines(qtbot, make_client, event_log):
    client = make_client()
    events = event_log(client)
    job_id = client.submit(_generate_job(prompt="crash"))
    with qtbot.waitSignal(client.crashed, timeout=10_000) as crash:
        pass
    assert "exited unexpectedly with code 3" in crash.args[0]
    assert "simulated CUDA error" in crash.args[0]
    finished = events.finished(job_id)
    assert finished["status"] == "failed"
    assert finished["error"]["kind"] == "internal"
    assert "simulated CUDA error" in finished["error"]["message"]
    assert "fake worker: about to crash" in finished["error"]["detail"]
    assert client.state is WorkerState.CRASHED
    assert client.open_jobs() == []


def test_kill_9_is_noticed_within_a_second_and_restart_works(qtbot, make_client, event_log):
    client = make_client(FAKE_WORKER_STEP_S="0.2")
    events = event_log(client)
    running = client.submit(_generate_job(steps=50))
    queued = client.submit(_generate_job(steps=2))
    qtbot.waitUntil(lambda: bool(events.of_type("progress", running)), timeout=10_000)
    crashed_at: list[float] = []
    client.crashed.connect(lambda _msg: crashed_at.append(time.monotonic()))
    killed_at = time.monotonic()
    os.kill(client.pid(), signal.SIGKILL)
    qtbot.waitUntil(lambda: bool(crashed_at), timeout=5_000)
    assert crashed_at[0] - killed_at < 1.0
    for job_id in (running, queued):  # every unfinished job ends, none is left hanging
        assert events.finished(job_id)["status"] == "failed"
        assert "killed by a signal" in events.finished(job_id)["error"]["message"]
    assert client.state is WorkerState.CRASHED

    with qtbot.waitSignal(client.helloReceived, timeout=10_000):
        client.restart()
    assert client.state is WorkerState.READY
    again = client.submit(_generate_job(steps=2))
    qtbot.waitUntil(lambda: events.finished(again) is not None, timeout=10_000)
    assert events.finished(again)["status"] == "done"


def test_submit_after_a_crash_starts_a_new_worker(qtbot, make_client, event_log):
    client = make_client()
    events = event_log(client)
    client.submit(_generate_job(prompt="crash"))
    qtbot.waitUntil(lambda: client.state is WorkerState.CRASHED, timeout=10_000)
    job_id = client.submit(_generate_job())
    qtbot.waitUntil(lambda: events.finished(job_id) is not None, timeout=10_000)
    assert events.finished(job_id)["status"] == "done"


def test_cancel_running_and_unstarted_jobs(qtbot, make_client, event_log):
    client = make_client(FAKE_WORKER_STEP_S="0.1")
    events = event_log(client)
    job_id = client.submit(_generate_job(steps=100))
    qtbot.waitUntil(lambda: bool(events.of_type("progress", job_id)), timeout=10_000)
    client.cancel(job_id)
    qtbot.waitUntil(lambda: events.finished(job_id) is not None, timeout=5_000)
    assert events.finished(job_id)["status"] == "cancelled"
    assert client.state is WorkerState.READY

    client.shutdown(wait=True)
    client.cancel("unknown-id")  # not ours: nothing happens
    assert events.finished("unknown-id") is None


def test_restart_of_a_running_worker_cancels_its_jobs(qtbot, make_client, event_log):
    client = make_client(FAKE_WORKER_STEP_S="0.2")
    events = event_log(client)
    job_id = client.submit(_generate_job(steps=100))
    qtbot.waitUntil(lambda: bool(events.of_type("progress", job_id)), timeout=10_000)
    first_pid = client.pid()
    with qtbot.waitSignal(client.helloReceived, timeout=10_000):
        client.restart()
    assert client.pid() != first_pid
    assert events.finished(job_id)["status"] == "cancelled"
    assert client.state is WorkerState.READY


def test_shutdown_kills_a_worker_that_does_not_exit(qtbot, make_client):
    client = make_client(FAKE_WORKER_IGNORE_SHUTDOWN="1")
    with qtbot.waitSignal(client.helloReceived, timeout=10_000):
        client.start()
    started = time.monotonic()
    client.shutdown(timeout_ms=300)
    qtbot.waitUntil(lambda: client.state is WorkerState.STOPPED, timeout=5_000)
    assert time.monotonic() - started < 3
    assert not client.is_running()


def test_a_worker_that_cannot_start_fails_its_job(qtbot, make_client, event_log):
    client = make_client(["/nonexistent/python-for-loraloom", "-m", "app.worker"])
    events = event_log(client)
    crashes: list[str] = []
    client.crashed.connect(crashes.append)
    job_id = client.submit(_generate_job())
    qtbot.waitUntil(lambda: events.finished(job_id) is not None, timeout=5_000)
    assert events.finished(job_id)["status"] == "failed"
    assert "could not be started" in events.finished(job_id)["error"]["message"]
    assert client.state is WorkerState.CRASHED
    assert crashes and "/nonexistent/python-for-loraloom" in crashes[0]


def test_job_submitted_during_a_restart_goes_to_the_new_worker(qtbot, make_client, event_log):
    client = make_client()
    events = event_log(client)
    with qtbot.waitSignal(client.helloReceived, timeout=10_000):
        client.start()
    first_pid = client.pid()
    client.restart()  # the old worker is still exiting when the job comes
    job_id = client.submit(_generate_job())
    held = client.submit(_generate_job())
    client.cancel(held)  # a held job is cancelled here, never sent
    assert events.finished(held)["status"] == "cancelled"
    qtbot.waitUntil(lambda: events.finished(job_id) is not None, timeout=10_000)
    assert events.finished(job_id)["status"] == "done"
    assert client.pid() not in (None, first_pid)


def test_shutdown_while_jobs_wait_for_a_worker_cancels_them(qtbot, make_client, event_log):
    client = make_client()
    events = event_log(client)
    with qtbot.waitSignal(client.helloReceived, timeout=10_000):
        client.start()
    client.shutdown()
    job_id = client.submit(_generate_job())  # arrives while the worker exits
    client.shutdown(wait=True)  # the application is closing: nobody will run it
    assert events.finished(job_id)["status"] == "cancelled"
    assert client.state is WorkerState.STOPPED
    assert not client.is_running()
