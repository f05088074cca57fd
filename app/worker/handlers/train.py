"""The worker's ``train`` job: run the training engine, forward its events.

Job parameters (one of ``config`` / ``config_path``, optionally ``resume``)::

    {"id": "t1", "kind": "train", "config": {...TrainConfig as a table...}}
    {"id": "t2", "kind": "train", "config_path": "/runs/my.toml"}
    {"id": "t3", "kind": "train", "resume": "/runs/mychar"}          # the run's own config
    {"id": "t4", "kind": "train", "resume": "/runs/mychar", "config": {... more steps ...}}

Events (the trainer's :mod:`app.core.events`, sent on as they are): ``artifact {kind: "run", path}``
first (the run folder, for a later resume); ``progress {step, total, eta_s, loss, lr, phase}`` per step
(``phase`` "caching" with ``message`` while latents are encoded: step/total count pictures);
``image {path, step, meta}`` per sample picture; ``artifact {kind: "checkpoint" |
"adapter", path, step}`` per saved file ("adapter" is the final one); ``log`` lines.
Cancel finishes the current step, saves a checkpoint and the resume state, then the
job ends ``cancelled``. A ``request`` command (``action`` "checkpoint" or "sample") makes the
trainer save a checkpoint or render the sample prompts after the current step.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from app.core.configs import ConfigError
from app.core.events import ArtifactSaved, ImageReady, JobEvent, LogLine
from app.core.train_config import TrainConfig
from app.worker.context import Handler, JobCancelled, JobContext

KNOWN = ("config", "config_path", "resume")


def parse_params(params: dict[str, Any]) -> tuple[TrainConfig | None, str | None]:
    unknown = sorted(set(params) - set(KNOWN))
    if unknown:
        raise ConfigError(f"train job: unknown key {unknown[0]!r} (known: {', '.join(KNOWN)})")
    resume = params.get("resume") or None
    if resume is not None and not isinstance(resume, str):
        raise ConfigError(f"train job: resume must be the path of a run folder, not {resume!r}")
    config: TrainConfig | None = None
    if params.get("config") is not None:
        config = TrainConfig.from_dict(params["config"], where="train job")
    elif params.get("config_path"):
        config = TrainConfig.load_toml(str(params["config_path"]))
    elif resume is None:
        raise ConfigError("train job: give 'config' (the settings), 'config_path' (a TOML file) or 'resume'")
    return config, resume


def make_train_handler(renderer: Any = None) -> Handler:
    """``renderer``: the worker's Renderer, whose GPU model is dropped to make room for training."""

    def train_job(ctx: JobContext) -> None:
        config, resume = parse_params(dict(ctx.job.params))
        from app.engine.training import train

        loaded = getattr(renderer, "loaded", None)
        if loaded is not None and loaded.device.type != "cpu":
            renderer.unload()
            ctx.report(LogLine(f"unloaded {loaded.source} to make room for training"))

        def on_event(event: JobEvent) -> None:
            # Paths go to the GUI absolute: it may not share the worker's working directory.
            if isinstance(event, (ImageReady, ArtifactSaved)):
                event = replace(event, path=str(Path(event.path).resolve()))
            ctx.report(event)

        result = train(
            config, resume=resume, on_event=on_event, should_stop=ctx.cancelled, take_requests=ctx.take_requests
        )
        if result.status == "cancelled":
            raise JobCancelled()

    return train_job
