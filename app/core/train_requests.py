"""What the GUI can ask of a running training job between two steps.

``"checkpoint"`` and ``"sample"`` are plain words (:class:`app.worker.protocol.RequestAction`);
"Try a prompt…" carries its prompt, so it is a type of its own. The worker turns a ``request``
line into these; the trainer reads them from ``take_requests()`` once per step.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_PROMPT_CHARS = 2000


@dataclass(frozen=True)
class TryPrompt:
    """Render ``prompt`` with the adapter as it is now (the run's sample settings), in the
    process that holds the model, and show it with the step it was rendered at."""

    prompt: str
    negative: str = ""
    seed: int | None = None  # None: the run's sample seed


TrainRequest = str | TryPrompt
