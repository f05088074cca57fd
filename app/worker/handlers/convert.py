"""The worker's ``convert`` job: rewrite an adapter file in another layout (the row's "Save as…")."""

from __future__ import annotations

from app.core.events import ArtifactKind, ArtifactSaved
from app.engine.rendering import Renderer
from app.worker.context import Handler, JobContext


def make_convert_handler(renderer: Renderer) -> Handler:
    def convert(ctx: JobContext) -> None:
        from app.core.configs import ConvertRequest
        from app.engine.adapter_convert import convert as convert_file

        request = ConvertRequest.from_dict(ctx.job.params, where="convert job")
        renderer.ensure_model(request.model_spec())
        assert renderer.mixer is not None
        mixer = renderer.mixer
        out = convert_file(
            request.src, request.out, request.to, mixer.index, mixer.family, base_weight=mixer.base_weight
        )
        ctx.report(ArtifactSaved(path=str(out.resolve()), kind=ArtifactKind.ADAPTER))

    return convert
