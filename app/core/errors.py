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


# ---------------------------------------------------------------- sentences shared by several layers

MESSAGE_PART_CHARS = 240  # a library's message quoted inside ours; the whole text goes to Details


def clip_words(text: str, limit: int = MESSAGE_PART_CHARS) -> str:
    """The first line of ``text``, cut at a word boundary with "…" when longer than ``limit``
    (a message cut mid-word reads as a bug; the full text belongs in the error's detail)."""
    import textwrap

    line = (text.strip().splitlines() or [""])[0].strip()
    if len(line) <= limit:
        return line
    return textwrap.shorten(line, width=limit, placeholder=" …") or line[:limit] + "…"


def not_downloaded_message(repo_id: str) -> str:
    """A Hub model that is not on disk while the Hub cannot be reached (captioner or base model)."""
    return (
        f"{repo_id} is not downloaded and the Hub cannot be reached (offline). "
        "Download it once online, or pick a local model folder."
    )
