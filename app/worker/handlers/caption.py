"""The worker's ``caption`` job: auto-caption a dataset folder with a kept-loaded captioner.

Reports Progress (LOADING, then CAPTIONING per picture); an ArtifactSaved of kind CAPTION
for every caption written (details: image, caption, previous; the GUI updates its items and
records an undo step); a warning LogLine for every skipped image (details: image) and a
closing LogLine with the summary (details: written, skipped, kept).
"""

from __future__ import annotations

from app.core.dataset.caption_config import CaptionRequest, Skip
from app.core.dataset.scan import ImageItem, check_folder
from app.core.events import ArtifactKind, ArtifactSaved, LogLevel, LogLine, Phase, Progress
from app.engine.captioning import CaptionCancelled, Captioner, load_captioner, run_captioning
from app.engine.captioning.registry import captioner_key
from app.worker.context import Handler, JobCancelled, JobContext


class CaptionerCache:
    """Keeps the last captioner loaded between jobs (a second run does not reload)."""

    def __init__(self) -> None:
        self.key: tuple[str, ...] | None = None
        self.captioner: Captioner | None = None

    def get(self, request: CaptionRequest) -> tuple[Captioner, bool]:
        key = captioner_key(request)
        if self.captioner is not None and self.key == key:
            return self.captioner, False
        if self.captioner is not None:
            self.captioner.close()
            self.captioner = None
        self.captioner = load_captioner(request)
        self.key = key
        return self.captioner, True


def make_caption_handler() -> Handler:
    cache = CaptionerCache()

    def caption(ctx: JobContext) -> None:
        request = CaptionRequest.from_dict(ctx.job.params, where="caption job")
        check_folder(request.folder)  # before a model loads (the folder may have gone since)
        ctx.report(
            Progress(
                step=0, total=0, phase=Phase.LOADING, message=f"loading {request.model or 'the default captioner'}"
            )
        )
        captioner, loaded = cache.get(request)
        if loaded:
            ctx.report(LogLine(f"loaded {captioner.name} from {captioner.source}"))
        ctx.check_cancel()

        def on_progress(done: int, total: int, eta: float | None, message: str) -> None:
            ctx.report(
                Progress(
                    step=done,
                    total=total,
                    phase=Phase.CAPTIONING,
                    eta_s=None if eta is None else round(eta, 2),
                    message=message,
                )
            )

        def on_caption(item: ImageItem, before: str, after: str) -> None:
            ctx.report(
                ArtifactSaved(
                    path=str(item.caption_path),
                    kind=ArtifactKind.CAPTION,
                    details={"image": str(item.path), "caption": after, "previous": before},
                )
            )

        def on_skip(skip: Skip) -> None:
            ctx.report(LogLine(skip.reason, LogLevel.WARNING, details={"image": str(skip.path)}))

        try:
            summary = run_captioning(
                captioner,
                request,
                on_progress=on_progress,
                on_caption=on_caption,
                on_skip=on_skip,
                should_cancel=ctx.cancelled,
            )
        except CaptionCancelled:
            raise JobCancelled() from None
        ctx.report(
            LogLine(
                summary.line(),
                details={"written": summary.written, "skipped": len(summary.skipped), "kept": summary.kept},
            )
        )

    return caption
