"""The worker's ``load_model`` job: load a base model into the shared Renderer before a render."""

from __future__ import annotations

from app.core.configs import ModelSpec
from app.core.events import Phase, Progress
from app.engine.rendering import Renderer
from app.worker import protocol as P
from app.worker.context import Handler, JobContext


def make_load_model_handler(renderer: Renderer) -> Handler:
    def load_model(ctx: JobContext) -> None:
        spec = ModelSpec.from_dict(ctx.job.params, where="load_model job")
        ctx.report(Progress(step=0, total=1, phase=Phase.LOADING, message=f"loading {spec.base}"))
        loaded = renderer.ensure_model(spec)
        ctx.report(P.ModelLoaded(**loaded.describe()))

    return load_model
