"""Read a ``.safetensors`` header without torch and without reading tensor data.

A safetensors file is: 8 bytes little-endian header length N, N bytes of JSON, then the
tensor bytes. A malformed or truncated file is refused here with a sentence that names
the file, instead of a crash deep inside a loader (or a huge allocation for a bogus N).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

MAX_HEADER_BYTES = 100 * 1024 * 1024  # safetensors' own limit


class SafetensorsError(ValueError):
    """The file is not a usable safetensors file; the message names it and says why."""


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    tensors: dict[str, dict]  # name -> {"dtype", "shape", "data_offsets"}
    metadata: dict[str, str]
    data_start: int
    file_size: int


def read_header(path: str | Path, *, check_offsets: bool = True) -> SafetensorsHeader:
    p = Path(path)
    try:
        size = p.stat().st_size
        with p.open("rb") as fh:
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
            raw = fh.read(n)
    except FileNotFoundError:
        raise SafetensorsError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise SafetensorsError(f"{p}: is a folder, not a file") from None
    except PermissionError:
        raise SafetensorsError(f"{p}: cannot be read (permission denied)") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SafetensorsError(f"{p}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{p}: not a safetensors file (header is not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise SafetensorsError(f"{p}: malformed safetensors metadata")
    data_start = 8 + n
    data_len = size - data_start
    tensors: dict[str, dict] = {}
    end_max = 0
    for name, info in header.items():
        offsets = info.get("data_offsets") if isinstance(info, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise SafetensorsError(f"{p}: malformed entry for tensor {name!r}")
        end_max = max(end_max, offsets[1])
        tensors[name] = info
    if check_offsets and end_max > data_len:
        raise SafetensorsError(
            f"{p}: truncated (tensor data needs {end_max} bytes, the file has {data_len}); "
            "download or copy it again"
        )
    return SafetensorsHeader(p, tensors, {str(k): str(v) for k, v in metadata.items()}, data_start, size)
