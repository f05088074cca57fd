"""The worker's ``generate`` job: render one picture with the shared Renderer."""

from __future__ import annotations

from pathlib import Path

from app.core.configs import GenerateRequest
from app.core.events import ImageReady, LogLevel, LogLine, Phase, Progress
from app.engine.rendering import RenderCancelled, Renderer
from app.worker import protocol as P
from app.worker.context import Handler, JobCancelled, JobContext


def make_generate_handler(renderer: Renderer) -> Handler:
    def generate(ctx: JobContext) -> None:
        request = GenerateRequest.from_dict(ctx.job.params, where="generate job")
        already = renderer.loaded is not None and renderer.loaded.source == request.base.strip()
        if not already:
            ctx.report(Progress(step=0, total=request.steps, phase=Phase.LOADING, message=f"loading {request.base}"))
            loaded = renderer.ensure_model(request.model_spec())
            ctx.report(P.ModelLoaded(**loaded.describe()))
            ctx.check_cancel()

        def on_step(step: int, total: int, eta: float) -> None:
            ctx.report(Progress(step=step, total=total, phase=Phase.RENDERING, eta_s=round(eta, 2)))

        try:
            result = renderer.render(request, on_step=on_step, should_cancel=ctx.cancelled)
        except RenderCancelled:
            raise JobCancelled() from None
        if result.mix is not None:  # refused adapters are skipped and reported; the others still apply
            for refused in result.mix.refused:
                ctx.report(LogLine(refused["message"], LogLevel.WARNING))
            for warning in result.mix.warnings:
                ctx.report(LogLine(warning, LogLevel.WARNING))
        ctx.report(ImageReady(path=str(Path(result.path).resolve()), meta=result.meta))

    return generate
