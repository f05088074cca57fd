"""A training run on accelerate: :func:`build_session`, then :func:`loop` (cached latents and text
in, UNet(+TE) LoRA forward/backward out).

    result = train(TrainConfig.load_toml("my.toml"), on_event=print)   # or Trainer(config).run()

The run reports through :mod:`app.core.events`: ``ArtifactSaved(kind=RUN)`` first, ``Progress``
(phase CACHING counting pictures, then TRAINING counting steps with loss and lr),
``ImageReady`` per sample, ``ArtifactSaved`` CHECKPOINT / ADAPTER per saved file, ``LogLine``
INFO / WARNING sentences.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from app.core.events import JobEvent
from app.core.train_config import TrainConfig
from app.core.train_requests import TrainRequest
from app.engine.training.data import TrainError
from app.engine.training.loop import loop
from app.engine.training.session import Reporter, TrainResult, TrainSession, build_session, discard_if_unused, open_run


class Trainer:
    """One run; ``session`` stays after :meth:`run` for a look at the model (tests, benches)."""

    def __init__(
        self,
        config: TrainConfig | None = None,
        *,
        resume: str | Path | None = None,
        on_event: Callable[[JobEvent], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        take_requests: Callable[[], list[TrainRequest]] | None = None,
    ) -> None:
        if config is None and resume is None:
            raise TrainError("give a config or a run folder to resume")
        self.config = config
        self.resume = resume
        self.reporter = Reporter(
            on_event or (lambda event: None), should_stop or (lambda: False), take_requests or (lambda: [])
        )
        self.session: TrainSession | None = None

    def run(self) -> TrainResult:
        opened = open_run(self.config, self.resume, self.reporter)
        self.config = opened.config
        try:
            session = self.session = build_session(opened, self.reporter)
            if session is None:  # stopped while caching
                return TrainResult(status="cancelled", run_dir=opened.run_dir.path, step=0, skipped=opened.data.skipped)
            return loop(session)
        except BaseException:
            discard_if_unused(opened)
            raise


def train(
    config: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    on_event: Callable[[JobEvent], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    take_requests: Callable[[], list[TrainRequest]] | None = None,
) -> TrainResult:
    """Run (or resume) a training run to the end or until ``should_stop()``; see :class:`Trainer`."""
    return Trainer(config, resume=resume, on_event=on_event, should_stop=should_stop, take_requests=take_requests).run()
