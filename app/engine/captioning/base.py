"""The interface every captioning backend implements, and where model files come from."""

from __future__ import annotations

import abc
from pathlib import Path

from PIL import Image

from app.core.dataset.caption_config import CaptionRequest
from app.core.errors import ErrorKind, clip_words
from app.engine.models import ModelError, _looks_like_path, check_hub_available, hub_load_error


class CaptionerError(ModelError):
    """A captioning model could not be found or loaded; the message names it."""


class Captioner(abc.ABC):
    """Loaded once (the worker keeps it between jobs); captions a batch of RGB images."""

    name: str = "captioner"
    # Largest batch the model accepts (a tagger exported with a fixed batch of 1), or None.
    max_batch: int | None = None

    def __init__(self, source: str) -> None:
        self.source = source

    @abc.abstractmethod
    def caption_batch(
        self, images: list[Image.Image], request: CaptionRequest, existing: list[str] | None = None
    ) -> list[str]:
        """One caption per image, in order (an empty string when the model found nothing).

        ``existing``: each image's caption now (a prompt's ``{tags}``); only prompted models read it.
        """

    def close(self) -> None:  # noqa: B027 (optional: by default garbage collection frees the memory)
        pass


def local_folder(source: str) -> Path | None:
    """The folder for a local model, None for a Hub id; raises for a path that does not exist."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise CaptionerError(f"{path}: a captioning model is a folder, not a file")
    if _looks_like_path(source):
        raise CaptionerError(f"{path}: no such model folder", kind=ErrorKind.MODEL_NOT_FOUND)
    return None


def hub_file(repo_id: str, filename: str) -> Path:
    """A file of a Hub repo through huggingface_hub's cache (downloads once)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    check_hub_available(repo_id, CaptionerError)
    try:
        return Path(hf_hub_download(repo_id, filename))
    except GatedRepoError:
        raise CaptionerError(
            f"{repo_id}: this Hub repo is gated; accept its license on the Hub and log in",
            kind=ErrorKind.MODEL_NOT_FOUND,
        ) from None
    except RepositoryNotFoundError:
        raise CaptionerError(
            f"{repo_id}: no such model repo on the Hugging Face Hub", kind=ErrorKind.MODEL_NOT_FOUND
        ) from None
    except LocalEntryNotFoundError as exc:  # before EntryNotFoundError, its base class
        raise hub_load_error(repo_id, exc, filename, CaptionerError) from None
    except EntryNotFoundError:
        raise CaptionerError(f"{repo_id}: the repo has no {filename}", kind=ErrorKind.MODEL_NOT_FOUND) from None
    except OSError as exc:
        raise hub_load_error(repo_id, exc, filename, CaptionerError) from None


def load_error(source: str, what: str, exc: BaseException) -> CaptionerError:
    """A loader's exception as one sentence; an uncached Hub id offline reads as 'not downloaded'."""
    if local_folder_or_none(source) is None:
        return hub_load_error(source, exc, f"the {what}", CaptionerError)
    return CaptionerError(
        f"{source}: could not load the {what} ({clip_words(str(exc)) or type(exc).__name__})",
        kind=ErrorKind.MODEL_NOT_FOUND,
        detail=f"{type(exc).__name__}: {exc}",
    )


def load_processor_and_model(source: str, processor_cls, model_cls, what: str, device, dtype, **model_kwargs):
    """A transformers processor + model from a local folder or a Hub id, on ``device`` in eval mode.

    ``model_kwargs`` go to ``from_pretrained`` (a 4-bit ``quantization_config``: such a model is
    placed on the GPU by its loader and not moved after).

    Raises :class:`CaptionerError` naming ``source`` and ``what`` when either will not load.
    """
    folder = local_folder(source)
    where = str(folder) if folder else source
    if folder is None:
        check_hub_available(source, CaptionerError)
    try:
        processor = processor_cls.from_pretrained(where, local_files_only=folder is not None)
        if "quantization_config" in model_kwargs:
            model_kwargs.setdefault("device_map", {"": device})
        model = model_cls.from_pretrained(where, dtype=dtype, local_files_only=folder is not None, **model_kwargs)
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:  # ImportError: a missing extra
        raise load_error(source, what, exc) from None
    if "quantization_config" not in model_kwargs:
        model = model.to(device)
    return processor, model.eval()


def local_folder_or_none(source: str) -> Path | None:
    try:
        return local_folder(source)
    except CaptionerError:
        return None
