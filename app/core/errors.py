"""The closed set of error kinds a job can fail with.

Lives in core so that the engine can tag its errors without knowing about the worker;
the protocol re-exports it for the GUI.
"""

from __future__ import annotations

from enum import Enum


class ErrorKind(str, Enum):
    BAD_INPUT = "bad_input"
    INCOMPATIBLE_ADAPTER = "incompatible_adapter"
    OUT_OF_MEMORY = "out_of_memory"
    MODEL_NOT_FOUND = "model_not_found"
    CANCELLED = "cancelled"
    DISK_FULL = "disk_full"  # no space (or quota) left while saving; what was saved before is whole
    PERMISSION = "permission"  # the folder or file is read-only or not the user's
    INTERNAL = "internal"
