"""Job handlers: one module per job kind, each turning engine calls into typed events."""

from __future__ import annotations

from app.engine.rendering import Renderer
from app.worker import protocol as P
from app.worker.context import Handler
from app.worker.handlers.bake import make_bake_handler
from app.worker.handlers.caption import make_caption_handler
from app.worker.handlers.convert import make_convert_handler
from app.worker.handlers.generate import make_generate_handler
from app.worker.handlers.load_model import make_load_model_handler
from app.worker.handlers.mask import make_mask_handler
from app.worker.handlers.train import make_train_handler


def build_handlers() -> dict[P.JobKind, Handler]:
    # One Renderer for the whole process: it keeps the loaded pipeline between jobs.
    renderer = Renderer()
    return {
        P.JobKind.LOAD_MODEL: make_load_model_handler(renderer),
        P.JobKind.GENERATE: make_generate_handler(renderer),
        P.JobKind.CAPTION: make_caption_handler(),
        P.JobKind.MASK: make_mask_handler(),
        P.JobKind.BAKE: make_bake_handler(renderer),
        P.JobKind.CONVERT: make_convert_handler(renderer),
        P.JobKind.TRAIN: make_train_handler(renderer),
    }
