"""The worker's ``bake`` job: merge an adapter mix into one adapter file."""

from __future__ import annotations

from app.core.events import ArtifactKind, ArtifactSaved, LogLine, Phase, Progress
from app.engine.rendering import RenderCancelled, Renderer
from app.worker.context import Handler, JobCancelled, JobContext


def make_bake_handler(renderer: Renderer) -> Handler:
    def bake(ctx: JobContext) -> None:
        from app.core.configs import BakeRequest
        from app.engine.baking import bake_mix

        request = BakeRequest.from_dict(ctx.job.params, where="bake job")
        renderer.ensure_model(request.model_spec())
        assert renderer.mixer is not None

        def on_progress(done: int, total: int) -> None:
            if done == total or done % 16 == 0:
                ctx.report(Progress(step=done, total=total, phase=Phase.BAKING, message="baking"))

        try:
            result = bake_mix(
                renderer.mixer,
                request.adapter_entries(),
                request.out,
                rank=request.rank or None,
                base=request.base,
                on_progress=on_progress,
                should_cancel=ctx.cancelled,
            )
        except RenderCancelled:
            raise JobCancelled() from None
        ctx.report(LogLine(result.describe()))
        ctx.report(
            ArtifactSaved(
                path=str(result.path.resolve()),
                kind=ArtifactKind.ADAPTER,
                details={
                    "rank": result.rank,
                    "exact": result.exact,
                    "relative_error": result.relative_error,
                    "layers": result.layers,
                },
            )
        )

    return bake
