"""Content-keyed caches of VAE latents and text embeddings, shared by every run.

A latent is keyed by the picture's bytes, the VAE's weights, the bucket, the flip and
the crop rule; a text embedding by the text encoders' weights and the caption. Change
any of them and the key changes, so a cache entry is never stale and is reused by any
run (or any process) that needs the same thing. Each entry is one small safetensors
file written atomically, so a crash or two processes racing cannot leave a bad entry.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_save

from app.core.dataset.scan import DatasetError, load_training_image
from app.core.files import atomic_write_bytes
from app.engine.training.buckets import CropPlan, plan_crop

log = logging.getLogger(__name__)
CROP_RULE = "cover-centre-lanczos-v1"


def fingerprint(*modules: torch.nn.Module, extra: str = "") -> str:
    """A content hash of module weights: names, shapes and a sample of values of every tensor.

    Samples (first and last values and a float64 sum per tensor) keep this fast on
    multi-GB encoders while any real fine-tune or swap still changes the result.
    """
    h = hashlib.sha256(extra.encode())
    for module in modules:
        h.update(type(module).__name__.encode())
        config = getattr(module, "config", None)
        if config is not None:
            h.update(json.dumps(_plain(config), sort_keys=True, default=str).encode())
        for name, tensor in sorted(module.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            if flat.numel():
                sample = torch.cat([flat[:256], flat[-256:]]).to("cpu", torch.float32)
                h.update(sample.numpy().tobytes())
                h.update(np.float64(flat.double().sum().item()).tobytes())
    return h.hexdigest()[:32]


def _plain(config) -> dict:
    if hasattr(config, "to_dict"):
        return config.to_dict()
    return dict(config)


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def _entry_path(root: Path, key: str) -> Path:
    return root / key[:2] / f"{key}.safetensors"


def _write(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    atomic_write_bytes(path, safetensors_save({k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}))


def _read(path: Path) -> dict[str, torch.Tensor] | None:
    try:
        return load_file(str(path))
    except FileNotFoundError:
        return None
    except Exception as exc:  # a damaged entry is recomputed, never fatal
        log.warning("ignoring damaged cache entry %s (%s)", path, exc)
        return None


def prepare_pixels(path: Path, plan: CropPlan, flip: bool) -> torch.Tensor:
    """The picture as its bucket: RGB in [-1, 1], shape (3, H, W)."""
    image = load_training_image(path)
    if image.size != plan.original:  # the header size was wrong; plan for the real size
        plan = plan_crop(image.size[0], image.size[1], plan.bucket)
    image = image.resize(plan.scaled, Image.Resampling.LANCZOS)
    bw, bh = plan.bucket
    image = image.crop((plan.left, plan.top, plan.left + bw, plan.top + bh))
    if flip:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


class LatentCache:
    """VAE latent distributions (mean, std) per picture, bucket and flip."""

    def __init__(
        self,
        root: Path,
        vae: torch.nn.Module,
        *,
        dtype: torch.dtype = torch.float32,
        encode: Callable[[torch.nn.Module, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
    ) -> None:
        """``encode(vae, pixels)`` -> (mean, std): the family's ``vae_latents`` (default: the
        VAE's ``latent_dist`` as it is)."""
        self.root = Path(root) / "latents"
        self.vae = vae
        self.encode = encode or (lambda v, x: (lambda d: (d.mean, d.std))(v.encode(x).latent_dist))
        self.dtype = dtype
        self.vae_id = fingerprint(vae, extra=str(dtype))
        self._hashes: dict[Path, str] = {}
        self.hits = 0
        self.misses = 0

    def content_hash(self, path: Path) -> str:
        """sha256 of the picture's bytes, read once per run."""
        digest = self._hashes.get(path)
        if digest is None:
            try:
                digest = self._hashes[path] = file_hash(path)
            except OSError as exc:  # deleted or unreadable since the dataset scan: the picture's problem
                raise DatasetError(f"{path}: cannot be read any more ({exc.strerror or exc})") from None
        return digest

    def key(self, path: Path, bucket: tuple[int, int], flip: bool) -> str:
        return _key(self.content_hash(path), self.vae_id, f"{bucket[0]}x{bucket[1]}", str(flip), CROP_RULE)

    def ensure(
        self, path: Path, size: tuple[int, int], bucket: tuple[int, int], flip: bool, device: torch.device
    ) -> None:
        entry = _entry_path(self.root, self.key(path, bucket, flip))
        if entry.is_file() and _read(entry) is not None:
            self.hits += 1
            return
        self.misses += 1
        pixels = prepare_pixels(path, plan_crop(size[0], size[1], bucket), flip)
        with torch.no_grad():
            mean, std = self.encode(self.vae, pixels[None].to(device, self.dtype))
        _write(entry, {"mean": mean[0].float(), "std": std[0].float()})

    @functools.lru_cache(maxsize=2048)  # noqa: B019 - one cache object per run
    def load(self, path: Path, bucket: tuple[int, int], flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
        entry = _entry_path(self.root, self.key(path, bucket, flip))
        tensors = _read(entry)
        if tensors is None:
            raise FileNotFoundError(
                f"{entry}: latent cache entry missing (was the cache folder cleared during the run?)"
            )
        return tensors["mean"], tensors["std"]


class TextCache:
    """Text-encoder outputs per caption (``embeds`` and, for SDXL, ``pooled``).

    Entries missing on disk are computed on first use with ``encode`` and stored, so
    shuffled captions fill the cache as they occur.
    """

    def __init__(
        self, root: Path, encoders: list[torch.nn.Module], encode: Callable[[list[str]], dict], *, extra: str = ""
    ) -> None:
        self.root = Path(root) / "text"
        self.encode = encode
        self.text_id = fingerprint(*encoders, extra=extra)
        self._memory: dict[str, dict[str, torch.Tensor]] = {}
        self.hits = 0
        self.misses = 0

    def get_many(self, captions: list[str]) -> list[dict[str, torch.Tensor]]:
        out: list[dict[str, torch.Tensor] | None] = []
        missing: list[str] = []
        for caption in captions:
            found = self._lookup(caption)
            out.append(found)
            if found is None and caption not in missing:
                missing.append(caption)
        if missing:
            self.misses += len(missing)
            with torch.no_grad():
                computed = self.encode(missing)
            for i, caption in enumerate(missing):
                entry = {k: v[i].detach().to("cpu", torch.float32) for k, v in computed.items()}
                _write(_entry_path(self.root, _key(self.text_id, caption)), entry)
                self._remember(caption, entry)
            out = [o if o is not None else self._memory[c] for o, c in zip(out, captions)]
        return out  # type: ignore[return-value]

    def _lookup(self, caption: str) -> dict[str, torch.Tensor] | None:
        if caption in self._memory:
            self.hits += 1
            return self._memory[caption]
        tensors = _read(_entry_path(self.root, _key(self.text_id, caption)))
        if tensors is not None:
            self.hits += 1
            self._remember(caption, tensors)
        return tensors

    def _remember(self, caption: str, tensors: dict[str, torch.Tensor]) -> None:
        if len(self._memory) < 4096:
            self._memory[caption] = tensors
