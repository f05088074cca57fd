"""How a failed job is put into words for the user, the same in every tab."""

from __future__ import annotations

from app.ui.jobs import JobError

# What the user can do about each error kind, shown before the worker's message.
ERROR_HEADINGS = {
    "bad_input": "Bad settings",
    "incompatible_adapter": "Incompatible adapter",
    "out_of_memory": "Out of memory (try a smaller size or fewer steps)",
    "model_not_found": "Model not found",
    "cancelled": "Cancelled",
    "disk_full": "Disk full",
    "permission": "Read-only folder",
    "internal": "Worker error",
}


def describe_error(error: JobError | None) -> str:
    if error is None:
        return "Failed."
    heading = ERROR_HEADINGS.get(error.kind, error.kind)
    if error.message.startswith(heading):  # "Disk full while saving ...": a heading would repeat it
        return error.message
    return f"{heading}: {error.message}" if error.message else heading
