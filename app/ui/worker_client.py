"""The GUI's side of the worker process: a ``QProcess`` speaking the JSON-lines protocol.

The worker (``python -m app.worker``) owns torch and the GPU; the GUI only writes
commands to its stdin and reads events from its stdout. Everything here runs on the GUI
thread through Qt signals, so no widget is ever touched from another thread, and the
GUI survives whatever happens to the worker (segfault, OOM kill, kill -9).
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Sequence
from enum import Enum
from typing import Any

from PySide6.QtCore import QObject, QProcess, QProcessEnvironment, QTimer, Signal

import app.worker.protocol as protocol
from app.core import worker_env
from app.worker.protocol import ErrorKind, EventType, JobStatus, ProtocolError

STDERR_TAIL_LINES = 20
DEFAULT_SHUTDOWN_TIMEOUT_MS = 3000


class WorkerState(str, Enum):
    STOPPED = "stopped"  # never started, or shut down on request
    STARTING = "starting"  # process launched, waiting for its hello
    READY = "ready"  # hello received, no job in flight
    BUSY = "busy"  # at least one submitted job has not finished
    CRASHED = "crashed"  # died without being asked to, or failed to start


def default_worker_command() -> list[str] | None:
    """The configured worker interpreter's command; None when the frozen app has no environment yet."""
    return worker_env.worker_command()


class _LineBuffer:
    """Splits a byte stream into complete lines; keeps a partial last line for later."""

    def __init__(self) -> None:
        self._pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        return lines

    def flush(self) -> list[bytes]:
        """The unterminated rest, once the stream has ended."""
        rest, self._pending = self._pending, b""
        return [rest] if rest.strip() else []


class WorkerClient(QObject):
    """Starts, feeds and watches one worker process.

    Jobs are dicts as the protocol's ``submit`` carries them. Every job submitted gets
    exactly one ``finished`` event through :attr:`eventReceived`: the worker's own, or
    a synthetic one when the worker dies (failed) or is stopped on request (cancelled).
    """

    eventReceived = Signal(dict)  # every valid event from the worker (and synthetic finishes)
    stateChanged = Signal(str)  # a WorkerState value
    helloReceived = Signal(dict)
    stderrLine = Signal(str)  # one line of the worker's log output
    logMessage = Signal(str, str)  # (level, text): the client's own diagnostics
    crashed = Signal(str)  # why, with the last stderr lines
    setupNeeded = Signal()  # a job waits for a worker, and no worker environment exists yet
    jobSubmitted = Signal(dict)  # the job as sent, id filled in

    def __init__(
        self,
        command: Sequence[str] | None = None,
        *,
        env: dict[str, str] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        # None: ask worker_env at each start, so an environment set up meanwhile is used.
        self._fixed_command = list(command) if command else None
        self._command = self._fixed_command or default_worker_command() or []
        self._extra_env = dict(env or {})
        self._process: QProcess | None = None
        self._state = WorkerState.STOPPED
        self._hello: dict[str, Any] | None = None
        self._stdout = _LineBuffer()
        self._stderr = _LineBuffer()
        self._stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._open_jobs: dict[str, dict[str, Any]] = {}  # submitted, no finished event yet
        self._unsent: list[str] = []  # submitted while no worker could take them
        self._stop_requested = False
        self._restart_pending = False
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill_after_timeout)

    # ------------------------------------------------------------ properties

    @property
    def state(self) -> WorkerState:
        return self._state

    @property
    def hello(self) -> dict[str, Any] | None:
        """The hello event of the running worker (device, versions), or None."""
        return self._hello

    @property
    def command(self) -> list[str]:
        return list(self._command)

    def fail_held_jobs(self, message: str) -> None:
        """Finish the jobs waiting for a worker that will not come (setup declined)."""
        for job_id in self._unsent:
            self._finish_locally(job_id, JobStatus.FAILED, ErrorKind.INTERNAL, message)
        self._unsent.clear()

    def open_jobs(self) -> list[str]:
        return list(self._open_jobs)

    def stderr_tail(self) -> list[str]:
        return list(self._stderr_tail)

    def pid(self) -> int | None:
        if self._process is None or self._process.state() == QProcess.ProcessState.NotRunning:
            return None
        return int(self._process.processId()) or None

    def is_running(self) -> bool:
        return self._process is not None and self._process.state() != QProcess.ProcessState.NotRunning

    # ------------------------------------------------------------ operations

    def start(self) -> None:
        """Launch the worker unless it is already running (returns at once)."""
        if self.is_running():
            return
        if self._fixed_command is None:
            command = default_worker_command()
            if command is None:  # jobs stay held until setup ends (start again) or is declined
                self._log("info", "no worker environment yet: asking to set one up")
                self.setupNeeded.emit()
                return
            self._command = command
        self._hello = None
        self._stdout = _LineBuffer()
        self._stderr = _LineBuffer()
        self._stderr_tail.clear()
        self._stop_requested = False
        process = QProcess(self)
        env = QProcessEnvironment.systemEnvironment()
        # Without it the worker's stdout is block-buffered and events arrive only at exit.
        env.insert("PYTHONUNBUFFERED", "1")
        extra = (
            self._extra_env if self._fixed_command else {**worker_env.launch_env(self._command[0]), **self._extra_env}
        )
        for key, value in extra.items():
            env.insert(key, value)
        process.setProcessEnvironment(env)
        process.readyReadStandardOutput.connect(self._read_stdout)
        process.readyReadStandardError.connect(self._read_stderr)
        process.finished.connect(self._on_finished)
        process.errorOccurred.connect(self._on_error)
        self._process = process
        self._set_state(WorkerState.STARTING)
        self._log("info", f"starting worker: {' '.join(self._command)}")
        process.start(self._command[0], self._command[1:])
        if self._process is process:  # not already failed to start
            # QProcess buffers writes made while the process is still starting.
            for job_id in self._unsent:
                if job_id in self._open_jobs:
                    self._write(protocol.submit(self._open_jobs[job_id]))
        self._unsent.clear()

    def submit(self, job: dict[str, Any]) -> str:
        """Send a job (starting the worker if needed); returns its id (made up if missing)."""
        job = dict(job)
        if not job.get("id"):
            job["id"] = uuid.uuid4().hex
        job_id = str(job["id"])
        job["id"] = job_id
        self._open_jobs[job_id] = job
        self.jobSubmitted.emit(dict(job))
        if self.is_running() and not self._stop_requested:
            self._write(protocol.submit(job))
            self._update_busy_state()
            return job_id
        # Held until a worker can take it: not started yet, or the current one is exiting.
        self._unsent.append(job_id)
        if self._stop_requested:
            self._restart_pending = True
        else:
            self.start()
        return job_id

    def cancel(self, job_id: str) -> None:
        """Ask the worker to stop a job; a job the worker cannot have is finished here."""
        if job_id not in self._open_jobs:
            return
        if job_id in self._unsent or not self.is_running():
            if job_id in self._unsent:
                self._unsent.remove(job_id)
            self._finish_locally(job_id, JobStatus.CANCELLED, ErrorKind.CANCELLED, "cancelled")
        elif not self._stop_requested:  # an exiting worker cancels everything anyway
            self._write(protocol.cancel(job_id))

    def request(self, job_id: str, action: str, **fields: Any) -> bool:
        """Ask a running job for something now (a train job: "checkpoint", "sample", "try" with its
        ``prompt``); False when it cannot be sent."""
        if job_id not in self._open_jobs or job_id in self._unsent or not self.is_running() or self._stop_requested:
            return False
        self._write(protocol.request(job_id, action, **fields))
        return True

    def kill(self, *, restart: bool = True) -> None:
        """Stop the worker at once (SIGKILL), e.g. a second Stop while a job is saving.

        Its open jobs end ``cancelled`` (not failed: the user asked), held jobs go to the
        fresh worker started when ``restart``. Files the job wrote are atomic, so the last
        saved checkpoint and resume state stay whole.
        """
        if not self.is_running():
            if restart and self._state is WorkerState.CRASHED:
                self.start()
            return
        assert self._process is not None
        self._stop_requested = True
        self._restart_pending = restart
        self._log("info", "stopping the worker at once (killed on request)")
        self._process.kill()

    def ping(self) -> None:
        if self.is_running() and not self._stop_requested:
            self._write(protocol.ping())

    def shutdown(self, timeout_ms: int = DEFAULT_SHUTDOWN_TIMEOUT_MS, *, wait: bool = False) -> None:
        """Ask the worker to exit; kill it if it has not after ``timeout_ms``.

        ``wait=True`` blocks until it is gone: only for application exit, when there is
        no event loop left to deliver the exit asynchronously.
        """
        self._restart_pending = self._restart_pending and not wait
        if not self._restart_pending:
            for job_id in self._unsent:  # held for a worker that will not come
                self._finish_locally(job_id, JobStatus.CANCELLED, ErrorKind.CANCELLED, "the worker was stopped")
            self._unsent.clear()
        if not self.is_running():
            if self._state is not WorkerState.CRASHED:
                self._set_state(WorkerState.STOPPED)
            return
        process = self._process
        assert process is not None
        if not self._stop_requested:  # a second call only waits (or re-arms the timer)
            self._stop_requested = True
            for job_id in list(self._open_jobs):
                self._write(protocol.cancel(job_id))
            self._write(protocol.shutdown())
            process.closeWriteChannel()
        if wait:
            if not process.waitForFinished(timeout_ms):
                self._log("warning", f"worker did not exit within {timeout_ms} ms; killing it")
                process.kill()
                process.waitForFinished(2000)
        else:
            self._kill_timer.start(timeout_ms)

    def restart(self) -> None:
        """Stop the worker (if running) and start a fresh one."""
        if self.is_running():
            self._restart_pending = True
            self.shutdown()
        else:
            self.start()

    # ------------------------------------------------------------ process I/O

    def _write(self, message: dict[str, Any]) -> None:
        assert self._process is not None
        self._process.write(protocol.encode(message).encode("utf-8"))

    def _read_stdout(self) -> None:
        if self._process is None:
            return
        for raw in self._stdout.feed(bytes(self._process.readAllStandardOutput().data())):
            self._handle_stdout_line(raw)

    def _read_stderr(self) -> None:
        if self._process is None:
            return
        for raw in self._stderr.feed(bytes(self._process.readAllStandardError().data())):
            self._handle_stderr_line(raw)

    def _drain(self) -> None:
        """Read what the dead process left in its pipes, including unterminated lines."""
        self._read_stdout()
        self._read_stderr()
        for raw in self._stdout.flush():
            self._handle_stdout_line(raw)
        for raw in self._stderr.flush():
            self._handle_stderr_line(raw)

    def _handle_stderr_line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", errors="replace").rstrip("\r")
        self._stderr_tail.append(line)
        self.stderrLine.emit(line)

    def _handle_stdout_line(self, raw: bytes) -> None:
        if not raw.strip():
            return
        try:
            event = protocol.parse_event(raw)
        except ProtocolError as exc:
            # A stray print() in some library must not take the GUI down with it.
            self._log("warning", f"ignored a malformed line from the worker: {exc}")
            return
        self._handle_event(event)

    def _handle_event(self, event: dict[str, Any]) -> None:
        etype = event.get("type")
        if etype == EventType.HELLO.value:
            self._hello = event
            if event.get("protocol") not in (None, protocol.PROTOCOL_VERSION):
                self._log(
                    "warning",
                    f"worker speaks protocol {event.get('protocol')}, this GUI {protocol.PROTOCOL_VERSION}",
                )
            self.helloReceived.emit(event)
            self._update_busy_state()
        elif etype == EventType.FINISHED.value:
            self._open_jobs.pop(event.get("job") or "", None)
        self.eventReceived.emit(event)
        if etype == EventType.FINISHED.value:
            self._update_busy_state()

    # ------------------------------------------------------------ process end

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error != QProcess.ProcessError.FailedToStart:
            return  # the others are followed by finished(), handled there
        reason = self._process.errorString() if self._process else "unknown error"
        self._forget_process()
        self._kill_timer.stop()
        message = f"The worker could not be started ({' '.join(self._command)}): {reason}"
        self._log("error", message)
        self._fail_open_jobs(message)
        self._set_state(WorkerState.CRASHED)
        self.crashed.emit(message)

    def _on_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self._drain()
        self._kill_timer.stop()
        self._forget_process()
        if self._stop_requested:
            self._log("info", f"worker stopped (exit code {exit_code})")
            for job_id in list(self._open_jobs):
                if job_id not in self._unsent:  # the held ones go to the next worker
                    self._finish_locally(job_id, JobStatus.CANCELLED, ErrorKind.CANCELLED, "the worker was stopped")
            self._set_state(WorkerState.STOPPED)
            if self._restart_pending or self._unsent:
                self._restart_pending = False
                self.start()
            return
        if exit_status == QProcess.ExitStatus.CrashExit:
            why = "the worker process crashed (killed by a signal)"
        else:
            why = f"the worker process exited unexpectedly with code {exit_code}"
        tail = self.stderr_tail()
        message = why[0].upper() + why[1:]
        if tail:
            message += ".\nLast worker output:\n" + "\n".join(tail)
        self._log("error", message)
        self._fail_open_jobs(message)
        self._set_state(WorkerState.CRASHED)
        self.crashed.emit(message)

    def _forget_process(self) -> None:
        if self._process is not None:
            self._process.deleteLater()
        self._process = None
        self._hello = None

    def _kill_after_timeout(self) -> None:
        if self._process is not None and self.is_running():
            self._log("warning", "worker did not exit after shutdown; killing it")
            self._process.kill()

    def _fail_open_jobs(self, message: str) -> None:
        detail = "\n".join(self.stderr_tail())
        for job_id in list(self._open_jobs):
            self._finish_locally(job_id, JobStatus.FAILED, ErrorKind.INTERNAL, message, detail)

    def _finish_locally(self, job_id: str, status: JobStatus, kind: ErrorKind, message: str, detail: str = "") -> None:
        """A finished event the worker could not send itself, so every job ends once."""
        self._open_jobs.pop(job_id, None)
        self.eventReceived.emit(protocol.finished(job_id, status, protocol.error(kind, message, detail)))

    # ------------------------------------------------------------ state

    def _update_busy_state(self) -> None:
        if self._process is None or self._hello is None:
            return
        self._set_state(WorkerState.BUSY if self._open_jobs else WorkerState.READY)

    def _set_state(self, state: WorkerState) -> None:
        if state is not self._state:
            self._state = state
            self.stateChanged.emit(state.value)

    def _log(self, level: str, text: str) -> None:
        self.logMessage.emit(level, text)
