"""Command lines that used to kill the worker's stdin reader (issue 10, item 4).

Each one must be a logged, ignored malformed line: the real worker process still answers
ping afterwards, and end of input still shuts it down.
"""

from __future__ import annotations

import pytest
from worker_process import WorkerProcess

from app.worker import protocol as P

pytestmark = pytest.mark.slow

KILLERS: dict[str, bytes] = {
    "deep nesting": b'{"cmd": "ping", "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}\n",
    "deep nesting, unclosed": b"[" * 200_000 + b"\n",
    "4,301-digit integer": b'{"cmd": "ping", "n": ' + b"7" * 4301 + b"}\n",
    "bad UTF-8": b'{"cmd": "ping", "x": "\xff\xfe\xc3"}\n',
    "lone surrogate id": b'{"cmd": "submit", "job": {"id": "\\ud800", "kind": "generate"}}\n',
    "unhashable command": b'{"cmd": ["ping"]}\n',
    "NUL bytes": b"\x00\x00{\x00}\n",
    "NaN job id": b'{"cmd": "cancel", "id": NaN}\n',
}


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    w = WorkerProcess(env={"LORALOOM_HOME": str(tmp_path_factory.mktemp("killers-home"))})
    assert w.next_event(timeout=60)["type"] == "hello"
    yield w
    if w.proc.poll() is None:
        w.proc.kill()
        w.proc.wait()


def send_bytes(worker: WorkerProcess, data: bytes) -> None:
    stdin = worker.proc.stdin
    assert stdin is not None
    stdin.flush()
    stdin.buffer.write(data)
    stdin.buffer.flush()


@pytest.mark.parametrize("name", list(KILLERS))
def test_a_killer_line_is_ignored_and_ping_still_answers(worker, name):
    send_bytes(worker, KILLERS[name])
    worker.send(P.ping())
    pong, before = worker.wait_for(lambda e: e["type"] == "pong", timeout=30)
    assert pong["job"] is None
    # The lone-surrogate id cannot be written back as UTF-8; nothing else may answer at all.
    assert all(e["type"] == "accepted" for e in before), before


def test_end_of_input_still_shuts_the_worker_down(worker):
    for line in KILLERS.values():
        send_bytes(worker, line)
    worker.send(P.ping())
    worker.wait_for(lambda e: e["type"] == "pong", timeout=30)
    worker.proc.stdin.close()
    assert worker.proc.wait(timeout=60) == 0
    assert any("malformed command" in line for line in worker.stderr)
