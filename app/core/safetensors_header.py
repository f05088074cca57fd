"""Read a ``.safetensors`` header without torch and without reading tensor data.

A safetensors file is: 8 bytes little-endian header length N, N bytes of JSON, then the
tensor bytes. A malformed or truncated file is refused here with a sentence that names
the file, instead of a crash deep inside a loader (or a huge allocation for a bogus N).
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.safe_files import RefusedFile, open_regular

MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit

# Bits per element of every dtype the safetensors format knows (sub-byte ones included).
DTYPE_BITS = {
    "BOOL": 8,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "F8_E8M0": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "I64": 64,
    "U64": 64,
    "F64": 64,
    "C64": 64,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
}


class SafetensorsError(ValueError):
    """The file is not a usable safetensors file; the message names it and says why.

    The only error :func:`read_header` raises, whatever the file holds."""


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    tensors: dict[str, dict]  # name -> {"dtype": str, "shape": list[int], "data_offsets": [int, int]}
    metadata: dict[str, str]
    data_start: int
    file_size: int


def _reject_constant(name: str) -> float:
    raise SafetensorsError(f"{name}, which JSON does not allow")  # Python's json accepts NaN/Infinity


def _read_raw(p: Path, root: str | Path | None) -> tuple[bytes, int, int]:
    """(header bytes, header length, file size), from a regular file only."""
    try:
        with open_regular(p, root=root) as fh:
            size = os.fstat(fh.fileno()).st_size
            raw_len = fh.read(8)
            if len(raw_len) < 8:
                raise SafetensorsError(f"{p}: too short to be a safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", raw_len)
            if n > MAX_HEADER_BYTES:
                raise SafetensorsError(f"{p}: not a safetensors file (header length {n} is absurd)")
            if 8 + n > size:
                raise SafetensorsError(
                    f"{p}: truncated or not a safetensors file (header wants {n} bytes, file has {size - 8})"
                )
            return fh.read(n), n, size
    except RefusedFile as exc:
        raise SafetensorsError(str(exc)) from None
    except FileNotFoundError:
        raise SafetensorsError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise SafetensorsError(f"{p}: is a folder, not a file") from None
    except PermissionError:
        raise SafetensorsError(f"{p}: cannot be read (permission denied)") from None
    except OSError as exc:
        raise SafetensorsError(f"{p}: cannot be read ({exc.strerror or exc})") from None


def _parse_json(p: Path, raw: bytes) -> dict[str, Any]:
    try:
        header = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except SafetensorsError as exc:
        raise SafetensorsError(f"{p}: not a safetensors file (header has {exc})") from None
    except RecursionError:
        raise SafetensorsError(f"{p}: not a safetensors file (header JSON is nested too deeply)") from None
    except (UnicodeDecodeError, ValueError):  # JSONDecodeError, and Python's limit on huge integers
        raise SafetensorsError(f"{p}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{p}: not a safetensors file (header is not a JSON object)")
    return header


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _tensor_problem(info: Any, data_len: int, check_offsets: bool) -> str | None:
    """What is wrong with one tensor entry, or None."""
    if not isinstance(info, dict):
        return "is not a JSON object"
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        return f"has an unknown dtype {str(dtype)[:40]!r}"
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        return "has a shape that is not a list of non-negative whole numbers"
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) and o >= 0 for o in offsets):
        return "has data_offsets that are not two non-negative whole numbers"
    begin, end = offsets
    if begin > end:
        return f"has data_offsets {begin} > {end}"
    if check_offsets and end > data_len:
        return None  # reported once for the whole file as truncation
    bits = math.prod(shape) * DTYPE_BITS[dtype]
    if bits % 8 or end - begin != bits // 8:
        return f"holds {end - begin} bytes but its shape {shape} of {dtype} needs {bits / 8:g}"
    return None


def read_header(path: str | Path, *, check_offsets: bool = True, root: str | Path | None = None) -> SafetensorsHeader:
    """The header of a ``.safetensors`` file, every field checked against the format.

    Only a regular file (inside ``root`` when given) is opened. Raises :class:`SafetensorsError`
    with one sentence naming the file, and nothing else, for any content."""
    p = Path(path)
    raw, n, size = _read_raw(p, root)
    header = _parse_json(p, raw)
    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsError(f"{p}: malformed safetensors metadata (every value must be a string)")
    data_start = 8 + n
    data_len = size - data_start
    end_max = 0
    for name, info in header.items():
        problem = _tensor_problem(info, data_len, check_offsets)
        if problem:
            raise SafetensorsError(f"{p}: malformed entry for tensor {name[:120]!r} (it {problem})")
        end_max = max(end_max, info["data_offsets"][1])
    if check_offsets and end_max > data_len:
        raise SafetensorsError(
            f"{p}: truncated (tensor data needs {end_max} bytes, the file has {data_len}); download or copy it again"
        )
    return SafetensorsHeader(p, header, dict(metadata), data_start, size)
