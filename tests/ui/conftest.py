"""Fixtures for the GUI tests: a fake worker process and windows that clean up after themselves."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FAKE_WORKER = Path(__file__).with_name("fake_worker.py")


def fake_worker_command() -> list[str]:
    return [sys.executable, str(FAKE_WORKER)]


@pytest.fixture
def make_client(qtbot) -> Iterator[Callable[..., object]]:
    """``make_client(**env)`` -> a WorkerClient running the fake worker with those env knobs."""
    from app.ui.worker_client import WorkerClient

    clients: list[WorkerClient] = []

    def make(command: list[str] | None = None, **env: str) -> WorkerClient:
        client = WorkerClient(command or fake_worker_command(), env=env)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.shutdown(timeout_ms=2000, wait=True)


@pytest.fixture
def make_window(qtbot, make_client) -> Callable[..., object]:
    """``make_window(client=None, **env)`` -> a shown MainWindow (fake worker by default)."""
    from app.ui.main_window import MainWindow

    def make(client=None, **env: str) -> MainWindow:
        window = MainWindow(client or make_client(**env))
        qtbot.addWidget(window)  # closed at teardown, which shuts its worker down
        window.show()
        qtbot.waitExposed(window)
        return window

    return make


class EventLog:
    """Collects a client's events so tests can wait for one with ``qtbot.waitUntil``."""

    def __init__(self, client) -> None:
        self.events: list[dict] = []
        client.eventReceived.connect(self.events.append)

    def of_type(self, etype: str, job: str | None = None) -> list[dict]:
        return [e for e in self.events if e["type"] == etype and (job is None or e.get("job") == job)]

    def finished(self, job: str) -> dict | None:
        found = self.of_type("finished", job)
        return found[0] if found else None


@pytest.fixture
def event_log() -> Callable[[object], EventLog]:
    return EventLog
