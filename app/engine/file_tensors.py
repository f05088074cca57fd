"""Tensors read back from safetensors files when needed, instead of held in memory.

Two users: the W0 of patched base layers (:class:`BaseWeights`) and the factors of held
adapters (:class:`LazyFactors`), both for :class:`app.engine.patching.AdapterMixer`.

The adapter mixer must be able to put every patched layer back to its original weight W0,
bit for bit. Keeping a copy of W0 for each touched layer doubles the memory of the layers
adapters touch (most of a UNet). The base checkpoint already holds W0 on disk, so we read
it back when needed: a layer's source in the file is found once, on the first patch (while
the layer still is W0), by a fingerprint of its first values, and accepted only if the whole
tensor read back, cast to the model's dtype and reshaped, equals the live weight bit for bit.
That check is what makes this exact whatever conversion the loader did (diffusers folder,
LDM/SGM single file with its renamed keys, OpenCLIP's fused q/k/v split into three layers,
1×1 convs stored as linears, fp32 files loaded as fp16): a layer without such a match keeps
a copy as before.

Files are read with ``os.pread`` on a descriptor opened once, not memory-mapped: pages read
stay in the kernel's page cache and are not counted in (or held by) the process. The file
stays open, so a file replaced by a new one (a rename) still reads as it was loaded; one
rewritten in place is noticed by its size and modification time and refused.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch

from app.core import model_choice
from app.core.safe_files import RefusedFile, open_regular
from app.core.safetensors_header import SafetensorsError, SafetensorsHeader, read_header
from app.engine.adapter_formats import LayerIndex, ParsedAdapter, Target, split_key

log = logging.getLogger(__name__)

DTYPES = {
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,  # fp8 Flux transformer files (flux1-dev-fp8.safetensors)
    "F8_E5M2": torch.float8_e5m2,
}
FINGERPRINT = 8  # values compared before a whole tensor is read
# Components whose layers adapters patch, in a diffusers folder.
COMPONENTS = ("unet", "text_encoder", "text_encoder_2", "transformer")


class FileChanged(RuntimeError):
    """A file changed on disk since it was read; what was read back from it cannot be trusted."""


@dataclass(frozen=True)
class Source:
    """Where one layer's W0 lies: ``rows`` rows of a file tensor, from row ``row``."""

    file: int  # index into BaseWeights.files
    key: str
    row: int
    rows: int


class TensorFile:
    """One open safetensors file, read by key with ``os.pread``."""

    def __init__(self, path: Path, root: Path | None = None) -> None:
        self.path = path
        self.header: SafetensorsHeader = read_header(path, root=root)
        self.handle: BinaryIO = open_regular(path, root=root)
        self.stamp = self._stamp()

    def _stamp(self) -> tuple[int, int]:
        st = os.fstat(self.handle.fileno())
        return st.st_mtime_ns, st.st_size

    def read(self, key: str, row: int = 0, rows: int | None = None, count: int | None = None) -> torch.Tensor:
        """``rows`` rows from ``row`` (default: all; or only the first ``count`` values there), flat,
        in the file's dtype."""
        if self._stamp() != self.stamp:
            raise FileChanged(
                f"{self.path}: the file changed on disk while it was in use; render again "
                "(the model and its adapters are read anew)"
            )
        info = self.header.tensors[key]
        dtype = DTYPES[info["dtype"]]
        shape = info["shape"]
        row_values = _numel(shape[1:])
        size = torch.empty((), dtype=dtype).element_size()
        if rows is None:
            rows = (shape[0] if shape else 1) - row
        values = rows * row_values if count is None else count
        if values == 0:
            return torch.empty(0, dtype=dtype)
        buf = bytearray(values * size)
        start = self.header.data_start + info["data_offsets"][0] + row * row_values * size
        got = os.preadv(self.handle.fileno(), [buf], start)
        if got != len(buf):
            raise FileChanged(
                f"{self.path}: the file is shorter than when it was read; render again "
                "(the model and its adapters are read anew)"
            )
        return torch.frombuffer(buf, dtype=dtype)


def model_files(source: str | os.PathLike[str] | None) -> tuple[Path, list[Path]]:
    """(root, the .safetensors files) a model source was loaded from; no files for a Hub id or a .ckpt."""
    if not source:
        return Path(), []
    if model_choice.has_companions(str(source)):  # a Flux transformer file and its companion files
        files = [Path(p) for p in model_choice.parse(str(source)).files()]
        files = [p for p in files if p.is_file() and p.suffix.lower() == ".safetensors"]
        return (Path(os.path.commonpath([p.parent for p in files])) if files else Path()), files
    path = Path(source).expanduser()
    if path.is_file():
        return path.parent, [path] if path.suffix.lower() == ".safetensors" else []
    if path.is_dir():
        return path, sorted(p for c in COMPONENTS for p in (path / c).glob("*.safetensors"))
    return Path(), []


class BaseWeights:
    """Finds and reads back the W0 of layers in the base model's safetensors files."""

    def __init__(self, root: Path, paths: list[Path]) -> None:
        self.files: list[TensorFile] = []
        for path in paths:
            try:
                self.files.append(TensorFile(path, root))
            except (OSError, RefusedFile, SafetensorsError) as exc:  # that file's layers keep copies
                log.warning("%s: W0 is kept in memory for its layers (%s)", path, exc)
        self._index: dict[torch.dtype, dict[bytes, list[Source]]] = {}

    @classmethod
    def for_source(cls, source: str | os.PathLike[str] | None) -> BaseWeights | None:
        root, paths = model_files(source)
        weights = cls(root, paths) if paths else None
        return weights if weights is not None and weights.files else None

    def find(self, weight: torch.Tensor) -> Source | None:
        """The place in the files that holds exactly ``weight`` (as it is now), or None."""
        live = weight.detach()
        for place in self._fingerprints(live.dtype).get(_bytes(live.reshape(-1)[:FINGERPRINT]), ()):
            shape = self.files[place.file].header.tensors[place.key]["shape"]
            row_values = _numel(shape[1:])
            rows = live.numel() // row_values
            if rows * row_values != live.numel() or place.row + rows > shape[0]:
                continue
            candidate = Source(place.file, place.key, place.row, rows)
            if torch.equal(self.read(candidate, live), live):
                return candidate
        return None

    def read(self, source: Source, like: torch.Tensor) -> torch.Tensor:
        """W0 at ``source``, in ``like``'s dtype, shape and device (a new tensor)."""
        flat = self.files[source.file].read(source.key, source.row, source.rows)
        return flat.to(device=like.device, dtype=like.dtype).reshape(like.shape)

    def _fingerprints(self, dtype: torch.dtype) -> dict[bytes, list[Source]]:
        """First values of every tensor (and of each third of one: a fused q/k/v), cast to ``dtype``."""
        index = self._index.get(dtype)
        if index is not None:
            return index
        index = {}
        for i, f in enumerate(self.files):
            for key, info in f.header.tensors.items():
                shape = info["shape"]
                if info["dtype"] not in DTYPES or not shape or not _numel(shape):
                    continue
                starts = [0] + ([shape[0] // 3, 2 * shape[0] // 3] if shape[0] % 3 == 0 else [])
                row_values = _numel(shape[1:])
                for row in starts:
                    head = f.read(key, row, 0, count=min(FINGERPRINT, row_values * (shape[0] - row)))
                    # rows=0: find() works out how many rows the weight spans
                    index.setdefault(_bytes(head.to(dtype)), []).append(Source(i, key, row, 0))
        self._index[dtype] = index
        return index


def _bytes(t: torch.Tensor) -> bytes:
    return t.cpu().contiguous().view(torch.uint8).numpy().tobytes()


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


class LazyFactors(Mapping):
    """An adapter layer's factors, read back from the adapter file (as float32) each time one is used.

    Stands in for the ``dict`` of :class:`~app.engine.adapter_formats.LayerDelta.tensors`, which the
    reader fills with float32 copies: 8 rank-32 SDXL LoRAs are 4 GB of them. Each factor was
    checked against the file bit for bit before being swapped for its place there.
    """

    def __init__(
        self, file: TensorFile, keys: dict[str, str], kept: dict[str, torch.Tensor], device: torch.device
    ) -> None:
        self._file, self._keys, self._kept, self._device = file, keys, kept, device

    def __getitem__(self, role: str) -> torch.Tensor:
        if role in self._kept:
            return self._kept[role]
        key = self._keys[role]
        shape = self._file.header.tensors[key]["shape"]
        return self._file.read(key).reshape(shape).to(device=self._device, dtype=torch.float32)

    def __contains__(self, role: object) -> bool:
        return role in self._kept or role in self._keys

    def __iter__(self) -> Iterator[str]:
        yield from self._kept
        yield from self._keys

    def __len__(self) -> int:
        return len(self._kept) + len(self._keys)


def read_factors_lazily(parsed: ParsedAdapter, index: LayerIndex, device: torch.device) -> None:
    """Swap the factors ``parsed`` holds for their places in its file, where they match bit for bit."""
    try:
        file = TensorFile(parsed.path)
    except (OSError, RefusedFile, SafetensorsError):
        return  # read_adapter just read it; if it cannot be opened again, the copies stay
    places: dict[Target, dict[str, str]] = {}
    for key in file.header.tensors:
        module, role = split_key(key)
        for target, _ in index.pieces(module) or ():  # a fused layer's factors serve each piece
            if target in parsed.layers:
                places.setdefault(target, {})[role] = key
    for target, keys in places.items():
        delta = parsed.layers[target]
        held = delta.tensors
        if not isinstance(held, dict):
            continue
        lazy = {}
        for role, key in keys.items():
            info = file.header.tensors[key]
            if role in held and info["dtype"] in DTYPES and held[role].dtype == torch.float32:
                back = file.read(key).reshape(info["shape"]).to(device=held[role].device, dtype=torch.float32)
                if torch.equal(back, held[role]):
                    lazy[role] = key
        if lazy:
            delta.tensors = LazyFactors(file, lazy, {r: t for r, t in held.items() if r not in lazy}, device)
