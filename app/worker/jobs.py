"""Job handlers: one function per job kind, each turning engine calls into events."""

from __future__ import annotations

from pathlib import Path

from app.core.configs import GenerateRequest, ModelSpec
from app.engine.rendering import RenderCancelled, Renderer
from app.worker import protocol as P
from app.worker.context import Handler, JobCancelled, JobContext
from app.worker.handlers.train import make_train_handler


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
        if result.mix is not None:  # refused adapters are skipped and reported; the others still apply
            for refused in result.mix.refused:
                ctx.emit(P.EventType.LOG, level="warning", message=refused["message"])
            for warning in result.mix.warnings:
                ctx.emit(P.EventType.LOG, level="warning", message=warning)
        ctx.emit(P.EventType.IMAGE, path=str(Path(result.path).resolve()), meta=result.meta)

    def bake(ctx: JobContext) -> None:
        from app.core.configs import BakeRequest
        from app.engine.baking import bake_mix

        request = BakeRequest.from_dict(ctx.job.params, where="bake job")
        renderer.ensure_model(request.model_spec())
        assert renderer.mixer is not None

        def on_progress(done: int, total: int) -> None:
            if done == total or done % 16 == 0:
                ctx.emit(P.EventType.PROGRESS, step=done, total=total, eta_s=None, message="baking")

        try:
            result = bake_mix(renderer.mixer, request.adapter_entries(), request.out, rank=request.rank or None,
                              base=request.base, on_progress=on_progress, should_cancel=ctx.cancelled)
        except RenderCancelled:
            raise JobCancelled() from None
        ctx.emit(P.EventType.LOG, level="info", message=result.describe())
        ctx.emit(P.EventType.ARTIFACT, path=str(result.path.resolve()), kind="adapter", rank=result.rank,
                 exact=result.exact, relative_error=result.relative_error, layers=result.layers)

    def convert(ctx: JobContext) -> None:
        from app.core.configs import ConvertRequest
        from app.engine.adapter_convert import convert as convert_file

        request = ConvertRequest.from_dict(ctx.job.params, where="convert job")
        renderer.ensure_model(request.model_spec())
        assert renderer.mixer is not None
        out = convert_file(request.src, request.out, request.to, renderer.mixer.index, renderer.mixer.family)
        ctx.emit(P.EventType.ARTIFACT, path=str(out.resolve()), kind="adapter")

    from app.worker.handlers.caption import make_caption_handler

    return {P.JobKind.LOAD_MODEL: load_model, P.JobKind.GENERATE: generate,
            P.JobKind.CAPTION: make_caption_handler(), P.JobKind.BAKE: bake, P.JobKind.CONVERT: convert,
            P.JobKind.TRAIN: make_train_handler(renderer)}
