"""A stand-in for ``python -m app.worker`` that speaks the same protocol, without torch.

Started by the UI tests as ``[sys.executable, fake_worker.py]``. It renders a flat
colour PNG (the colour depends on the seed) in a few fake sampling steps.

Knobs (environment):
  FAKE_WORKER_STEP_S        seconds per fake step (default 0.02)
  FAKE_WORKER_GARBAGE=1     print a malformed line before the hello
  FAKE_WORKER_SPLIT=1       write every event in two chunks (tests line buffering)
  FAKE_WORKER_IGNORE_SHUTDOWN=1   keep running after a shutdown command
Prompts that steer a generate job: "crash" (log to stderr, exit 3 at the first step),
"fail" (finished failed, bad_input).
"""

from __future__ import annotations

import json
import os
import queue
import random
import sys
import threading
import time
from pathlib import Path

STEP_S = float(os.environ.get("FAKE_WORKER_STEP_S", "0.02"))
SPLIT = os.environ.get("FAKE_WORKER_SPLIT") == "1"
_out_lock = threading.Lock()


def emit(event: dict) -> None:
    text = json.dumps(event) + "\n"
    with _out_lock:
        if SPLIT:
            half = len(text) // 2
            sys.stdout.write(text[:half])
            sys.stdout.flush()
            time.sleep(0.01)
            sys.stdout.write(text[half:])
        else:
            sys.stdout.write(text)
        sys.stdout.flush()


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


jobs: queue.Queue = queue.Queue()
cancelled: set[str] = set()


def reader() -> None:
    for line in sys.stdin:
        try:
            cmd = json.loads(line)
        except ValueError:
            log(f"fake worker: ignored malformed command {line!r}")
            continue
        name = cmd.get("cmd")
        if name == "ping":
            emit({"type": "pong", "job": None})
        elif name == "submit":
            emit({"type": "accepted", "job": cmd["job"]["id"]})
            jobs.put(cmd["job"])
        elif name == "cancel":
            cancelled.add(cmd["id"])
        elif name == "shutdown":
            if os.environ.get("FAKE_WORKER_IGNORE_SHUTDOWN") == "1":
                log("fake worker: ignoring shutdown")
                continue
            jobs.put(None)
            return
    if os.environ.get("FAKE_WORKER_IGNORE_SHUTDOWN") == "1":
        return  # a hung worker: stdin closed, but the main loop keeps waiting
    jobs.put(None)  # stdin closed


def render(job: dict) -> None:
    job_id = job["id"]
    if job.get("prompt") == "fail":
        emit(_finished(job_id, "failed", {"kind": "bad_input", "message": "the prompt says fail", "detail": ""}))
        return
    seed = job.get("seed", -1)
    if seed is None or seed < 0:
        seed = random.randrange(2**31)
    steps = int(job.get("steps", 4))
    for step in range(1, steps + 1):
        if job_id in cancelled:
            emit(_finished(job_id, "cancelled", {"kind": "cancelled", "message": "cancelled", "detail": ""}))
            return
        if job.get("prompt") == "crash":
            log("fake worker: about to crash")
            log("RuntimeError: simulated CUDA error")
            os._exit(3)
        time.sleep(STEP_S)
        emit({"type": "progress", "job": job_id, "step": step, "total": steps, "eta_s": (steps - step) * STEP_S})
    from PIL import Image

    rng = random.Random(seed)
    colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
    out_dir = Path(job.get("output_dir") or Path(os.environ["LORALOOM_HOME"]) / "outputs")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"fake-{job_id}.png"
    Image.new("RGB", (int(job.get("width", 64)), int(job.get("height", 64))), colour).save(path)
    meta = {k: job.get(k) for k in ("prompt", "negative", "steps", "guidance", "width", "height", "scheduler", "base")}
    meta["seed"] = seed
    emit({"type": "image", "job": job_id, "path": str(path), "meta": meta})
    emit(_finished(job_id, "done"))


def _finished(job_id: str, status: str, error: dict | None = None) -> dict:
    event = {"type": "finished", "job": job_id, "status": status}
    if error:
        event["error"] = error
    return event


def main() -> int:
    log("fake worker: starting")
    if os.environ.get("FAKE_WORKER_GARBAGE") == "1":
        with _out_lock:
            sys.stdout.write("this is not json\n")
            sys.stdout.write('{"type": "no-such-event", "job": null}\n')
            sys.stdout.flush()
    emit(
        {
            "type": "hello",
            "job": None,
            "device": "cpu",
            "torch": "fake",
            "diffusers": "fake",
            "cuda_name": None,
            "protocol": 1,
            "pid": os.getpid(),
        }
    )
    threading.Thread(target=reader, daemon=True).start()
    while True:
        job = jobs.get()
        if job is None:
            log("fake worker: bye")
            return 0
        if job["id"] in cancelled:
            emit(_finished(job["id"], "cancelled", {"kind": "cancelled", "message": "cancelled", "detail": ""}))
            continue
        if job.get("kind") == "load_model":
            emit(
                {
                    "type": "model",
                    "job": job["id"],
                    "base": job.get("base"),
                    "family": "sd1",
                    "device": "cpu",
                    "dtype": "fp32",
                }
            )
            emit(_finished(job["id"], "done"))
            continue
        render(job)


if __name__ == "__main__":
    sys.exit(main())
