"""The worker process loop: read commands on stdin, run jobs one at a time, emit events.

Threads: a reader thread parses stdin (so cancel and ping are answered while a job
runs); the main thread runs jobs. stdout carries protocol lines only: at start-up the
real stdout is kept for the protocol and file descriptor 1 is pointed at stderr, so a
library that prints (or a C extension writing to fd 1) cannot corrupt the stream.
"""

from __future__ import annotations

import collections
import importlib.metadata
import logging
import os
import sys
import threading
import traceback
from typing import Any, TextIO

from app.worker import protocol as P
from app.worker.context import Emitter, Handler, Job, JobCancelled, JobContext

log = logging.getLogger("app.worker")


class Worker:
    def __init__(self, stdin: TextIO, emitter: Emitter, handlers: dict[P.JobKind, Handler]) -> None:
        self._stdin = stdin
        self._emitter = emitter
        self._handlers = handlers
        self._queue: collections.deque[Job] = collections.deque()
        self._cond = threading.Condition()
        self._running: Job | None = None
        self._stopping = False

    # ------------------------------------------------------------ reader thread
    def read_commands(self) -> None:
        """Until end of input. This thread must never die: a dead reader leaves a worker that
        ignores ping, cancel, shutdown and end of input until it is killed."""
        while True:
            try:
                raw = self._stdin.readline()
            except (OSError, ValueError) as exc:  # stdin closed under us
                log.warning("stdin cannot be read (%s); shutting down", exc)
                break
            except MemoryError:  # a line too long to hold; the rest of it arrives as more lines
                log.warning("ignored a command line too long to read")
                continue
            if not raw:
                break
            try:
                self._on_command(P.parse_command(raw))
            except P.ProtocolError as exc:
                log.warning("ignored malformed command line: %s", exc)
            except Exception:  # noqa: BLE001 - a line that parses but cannot be acted on
                log.exception("ignored a command line that could not be handled: %.200r", raw)
        log.info("stdin closed; shutting down")
        self.stop()

    def _on_command(self, cmd: dict[str, Any]) -> None:
        name = P.CommandName(cmd["cmd"])
        if name is P.CommandName.PING:
            self._emitter.report(None, P.Pong())
        elif name is P.CommandName.SHUTDOWN:
            self.stop()
        elif name is P.CommandName.CANCEL:
            self._cancel(cmd["id"])
        elif name is P.CommandName.REQUEST:
            self._request(cmd["id"], P.train_request(cmd))
        elif name is P.CommandName.SUBMIT:
            spec = dict(cmd["job"])
            job = Job(id=spec.pop("id"), kind=P.JobKind(spec.pop("kind")), params=spec)
            with self._cond:
                self._queue.append(job)
                self._cond.notify()
            self._emitter.report(job.id, P.Accepted(job.kind))

    def _cancel(self, job_id: str) -> None:
        with self._cond:
            if self._running is not None and self._running.id == job_id:
                self._running.cancel_event.set()
                return
            for job in list(self._queue):
                if job.id == job_id:
                    self._queue.remove(job)
                    self._emitter.report(job.id, P.Finished(P.JobStatus.CANCELLED))
                    return
        log.info("cancel for unknown or finished job %s ignored", job_id)

    def _request(self, job_id: str, action: P.TrainRequest) -> None:
        with self._cond:
            job = self._running if self._running is not None and self._running.id == job_id else None
        if job is None:
            log.info("request %r for a job that is not running (%s) ignored", action, job_id)
            return
        with job.requests_lock:
            job.requests.append(action)

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            if self._running is not None:
                self._running.cancel_event.set()
            for job in self._queue:
                self._emitter.report(job.id, P.Finished(P.JobStatus.CANCELLED))
            self._queue.clear()
            self._cond.notify_all()

    # ------------------------------------------------------------ main thread
    def run(self) -> None:
        reader = threading.Thread(target=self.read_commands, name="stdin-reader", daemon=True)
        reader.start()
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._queue:
                    return
                job = self._queue.popleft()
                self._running = job
            try:
                self._run_job(job)
            finally:
                with self._cond:
                    self._running = None

    def _run_job(self, job: Job) -> None:
        ctx = JobContext(job, self._emitter)
        handler = self._handlers.get(job.kind)
        if handler is None:
            self._emitter.report(
                job.id,
                P.Finished(
                    P.JobStatus.FAILED,
                    P.JobError(P.ErrorKind.BAD_INPUT, f"this worker cannot run '{job.kind.value}' jobs yet"),
                ),
            )
            return
        try:
            handler(ctx)
        except JobCancelled:
            self._emitter.report(job.id, P.Finished(P.JobStatus.CANCELLED))
        except BaseException as exc:  # noqa: BLE001 - every failure becomes a finished event
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            err = describe_error(exc)
            log.error("job %s failed: %s", job.id, err["message"])
            if err["kind"] == P.ErrorKind.INTERNAL.value:
                log.error("%s", err["detail"])
            failure = P.JobError(P.ErrorKind(err["kind"]), err["message"], err["detail"])
            self._emitter.report(job.id, P.Finished(P.JobStatus.FAILED, failure))
        else:
            self._emitter.report(job.id, P.Finished(P.JobStatus.DONE))


def describe_error(exc: BaseException) -> dict[str, Any]:
    """Map an exception to the protocol's closed set of error kinds, with one sentence."""
    from app.core.configs import ConfigError

    kind = getattr(exc, "kind", None)
    if isinstance(kind, P.ErrorKind):
        return P.error(kind, str(exc), getattr(exc, "detail", ""))
    if isinstance(exc, ConfigError):
        return P.error(P.ErrorKind.BAD_INPUT, str(exc))
    if _is_out_of_memory(exc):
        return P.error(
            P.ErrorKind.OUT_OF_MEMORY,
            "out of GPU memory: lower the size or batch, pick fp16/bf16, or close other GPU programs",
            str(exc),
        )
    return P.error(P.ErrorKind.INTERNAL, f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _is_out_of_memory(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    oom = getattr(torch, "OutOfMemoryError", None) if torch else None
    return (oom is not None and isinstance(exc, oom)) or "out of memory" in str(exc).lower()


def hello_fields() -> dict[str, Any]:
    import torch

    from app.engine.models import pick_device

    device = pick_device()
    try:
        diffusers_version = importlib.metadata.version("diffusers")
    except importlib.metadata.PackageNotFoundError:
        diffusers_version = None
    return {
        "device": device.type,
        "torch": torch.__version__.split("+")[0],
        "diffusers": diffusers_version,
        "cuda_name": torch.cuda.get_device_name(0) if device.type == "cuda" else None,
        "protocol": P.PROTOCOL_VERSION,
        "pid": os.getpid(),
    }


def take_over_stdout() -> TextIO:
    """Keep the real stdout for the protocol; send everything else written to fd 1 to stderr."""
    sys.stdout.flush()
    proto = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return proto


def main() -> int:
    logging.basicConfig(
        level=os.environ.get("LORALOOM_LOG_LEVEL", "INFO"),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("diffusers", "transformers"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    proto_stream = take_over_stdout()
    emitter = Emitter(proto_stream)
    stdin = open(sys.stdin.fileno(), encoding="utf-8", errors="replace", closefd=False)  # noqa: SIM115 - the process's stdin

    from app.worker.handlers import build_handlers

    emitter.report(None, P.Hello(**hello_fields()))
    worker = Worker(stdin, emitter, build_handlers())
    worker.run()
    log.info("worker exits")
    # The stdin reader is a daemon thread that may be blocked inside stdin's buffered
    # reader; normal interpreter finalisation then aborts with "could not acquire lock
    # for <stdin> at interpreter shutdown" (exit -6, seen in CI). Every job has finished
    # and every file was written atomically, so flush and leave without finalisation.
    for stream in (proto_stream, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(0)
