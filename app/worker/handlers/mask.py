"""The worker's ``mask`` job: automatic loss masks for a dataset folder with a kept-loaded CLIPSeg.

Job parameters: a :class:`~app.core.dataset.mask_config.MaskRequest` as a table::

    {"id": "m1", "kind": "mask", "folder": "/pictures/10_cat", "prompt": "cat", "threshold": 0.4}

Reports Progress (LOADING, then MASKING per picture); an ArtifactSaved of kind MASK for every
sidecar written (path: the name.mask.png, details: image); a warning LogLine for every skipped
picture (details: image) and a closing LogLine with the summary (details: written, skipped, kept).
"""

from __future__ import annotations

from app.core.dataset.caption_config import Skip
from app.core.dataset.mask_config import MaskRequest
from app.core.dataset.scan import ImageItem, check_folder
from app.core.events import ArtifactKind, ArtifactSaved, LogLevel, LogLine, Phase, Progress
from app.worker.context import Handler, JobCancelled, JobContext


def make_mask_handler() -> Handler:
    kept: dict[str, object] = {}  # the last masker loaded, by (model, device, dtype): a second job does not reload

    def mask(ctx: JobContext) -> None:
        from app.engine.masking import MaskCancelled, load_masker, run_masking

        request = MaskRequest.from_dict(ctx.job.params, where="mask job")
        check_folder(request.folder)  # before a model loads
        key = f"{request.model_id()}|{request.device.value}|{request.dtype.value}"
        if key not in kept:
            ctx.report(Progress(step=0, total=0, phase=Phase.LOADING, message=f"loading {request.model_id()}"))
            kept.clear()
            kept[key] = load_masker(request)
            ctx.report(LogLine(f"loaded CLIPSeg from {request.model_id()}"))
        ctx.check_cancel()

        def on_progress(done: int, total: int, eta: float | None, message: str) -> None:
            eta_s = None if eta is None else round(eta, 2)
            ctx.report(Progress(step=done, total=total, phase=Phase.MASKING, eta_s=eta_s, message=message))

        def on_mask(item: ImageItem, path) -> None:
            ctx.report(ArtifactSaved(path=str(path), kind=ArtifactKind.MASK, details={"image": str(item.path)}))

        def on_skip(skip: Skip) -> None:
            ctx.report(LogLine(skip.reason, LogLevel.WARNING, details={"image": str(skip.path)}))

        try:
            summary = run_masking(
                kept[key],
                request,
                on_progress=on_progress,
                on_mask=on_mask,
                on_skip=on_skip,
                should_cancel=ctx.cancelled,
            )
        except MaskCancelled:
            raise JobCancelled() from None
        details = {"written": summary.written, "skipped": len(summary.skipped), "kept": summary.kept}
        ctx.report(LogLine(summary.line(), details=details))

    return mask
