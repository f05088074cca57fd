"""Job handlers: one function per job kind, each turning engine calls into events."""

from __future__ import annotations

from pathlib import Path

from app.core.configs import GenerateRequest, ModelSpec
from app.engine.rendering import RenderCancelled, Renderer
from app.worker import protocol as P
from app.worker.loop import Handler, JobCancelled, JobContext


def build_handlers() -> dict[P.JobKind, Handler]:
    # One Renderer for the whole process: it keeps the loaded pipeline between jobs.
    renderer = Renderer()

    def load_model(ctx: JobContext) -> None:
        spec = ModelSpec.from_dict(ctx.job.params, where="load_model job")
        ctx.emit(P.EventType.PROGRESS, step=0, total=1, eta_s=None, message=f"loading {spec.base}")
        loaded = renderer.ensure_model(spec)
        ctx.emit(P.EventType.MODEL, **loaded.describe())

    def generate(ctx: JobContext) -> None:
        request = GenerateRequest.from_dict(ctx.job.params, where="generate job")
        already = renderer.loaded is not None and renderer.loaded.source == request.base.strip()
        if not already:
            ctx.emit(P.EventType.PROGRESS, step=0, total=request.steps, eta_s=None,
                     message=f"loading {request.base}")
            loaded = renderer.ensure_model(request.model_spec())
            ctx.emit(P.EventType.MODEL, **loaded.describe())
            ctx.check_cancel()

        def on_step(step: int, total: int, eta: float) -> None:
            ctx.emit(P.EventType.PROGRESS, step=step, total=total, eta_s=round(eta, 2))

        try:
            result = renderer.render(request, on_step=on_step, should_cancel=ctx.cancelled)
        except RenderCancelled:
            raise JobCancelled() from None
        ctx.emit(P.EventType.IMAGE, path=str(Path(result.path).resolve()), meta=result.meta)

    return {P.JobKind.LOAD_MODEL: load_model, P.JobKind.GENERATE: generate}
