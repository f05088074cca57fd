"""Where a run in the training queue stands: shared by the Train tab and the quit guard."""

from __future__ import annotations

from enum import Enum


class EntryState(str, Enum):
    WAITING = "waiting"
    RUNNING = "running"
    STOPPING = "stopping"  # Stop pressed: finishing the step and saving
    DONE = "done"
    STOPPED = "stopped"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        return self in (EntryState.RUNNING, EntryState.STOPPING)

    @property
    def final(self) -> bool:
        return self in (EntryState.DONE, EntryState.STOPPED, EntryState.FAILED)
