"""Drive the real worker process (``python -m app.worker``) through its protocol."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from typing import Any

from app.worker import protocol as P


class WorkerProcess:
    def __init__(self, env: dict[str, str] | None = None) -> None:
        full_env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.raw_stdout: list[str] = []
        self.stderr: list[str] = []
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.raw_stdout.append(line)
            self.events.put(P.parse_event(line))  # raises (and the test sees no event) if bad

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def send(self, message: dict[str, Any] | str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(message if isinstance(message, str) else P.encode(message))
        self.proc.stdin.flush()

    def next_event(self, timeout: float = 60.0) -> dict[str, Any]:
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no event within {timeout} s; stderr tail:\n{''.join(self.stderr[-20:])}") from None

    def wait_for(self, predicate, timeout: float = 120.0) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Events until one matches; returns it and everything seen before it."""
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while True:
            event = self.next_event(max(0.1, deadline - time.monotonic()))
            if predicate(event):
                return event, seen
            seen.append(event)

    def run_job(self, job: dict[str, Any], timeout: float = 120.0):
        self.send(P.submit(job))
        return self.wait_for(lambda e: e["type"] == "finished" and e["job"] == job["id"], timeout)

    def close(self) -> int:
        if self.proc.poll() is None:
            try:
                self.send(P.shutdown())
                self.proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
