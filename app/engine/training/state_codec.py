"""Optimizer and scheduler state as safetensors (the tensors) + JSON (everything else), never pickle.

A run folder is something users share ("resume my run"), so loading its state must not
be able to run code. ``torch.save``/``torch.load`` are pickles; here the nested state
(dicts with int keys, tuples, lists, numbers, bools, strings, None and tensors, as AdamW,
Prodigy, bitsandbytes' 8-bit AdamW, GradScaler and the LR schedulers produce) is stored as
one safetensors file whose metadata holds the structure as JSON, each tensor a reference
by name. A tensor used twice (bitsandbytes shares one quantisation map between
parameters) is stored once and shared again on load.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save as safetensors_save

FORMAT = "loraloom-state-1"
STRUCTURE_KEY = "structure"
MAX_DEPTH = 32


class StateFormatError(ValueError):
    """The state cannot be stored or read in this format; the message says what is wrong."""


def encode(state: Any) -> bytes:
    """``state`` as the bytes of one safetensors file."""
    tensors: dict[str, torch.Tensor] = {}
    names: dict[int, str] = {}

    def walk(value: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise StateFormatError("state is nested too deeply")
        if isinstance(value, torch.Tensor):
            name = names.get(id(value))
            if name is None:
                name = names[id(value)] = f"t{len(tensors)}"
                # A copy of its own: safetensors refuses tensors that share memory (views, slices).
                tensors[name] = value.detach().to("cpu").clone().contiguous()
            return {"__tensor__": name}
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, dict):
            return {"__dict__": [[walk(k, depth + 1), walk(v, depth + 1)] for k, v in value.items()]}
        if isinstance(value, tuple):
            return {"__tuple__": [walk(v, depth + 1) for v in value]}
        if isinstance(value, list):
            return [walk(v, depth + 1) for v in value]
        raise StateFormatError(f"cannot store a {type(value).__name__} in the resume state")

    structure = walk(state, 0)
    return safetensors_save(tensors, metadata={"format": FORMAT, STRUCTURE_KEY: json.dumps(structure)})


def decode_file(path: Path) -> Any:
    """The state saved by :func:`encode`; :class:`StateFormatError` for anything else."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            metadata = fh.metadata() or {}
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}
    except Exception as exc:  # safetensors raises its own error types, and OSError
        raise StateFormatError(f"not a readable safetensors file ({_short(exc)})") from None
    if metadata.get("format") != FORMAT or STRUCTURE_KEY not in metadata:
        raise StateFormatError("not a LoRA Loom resume state (no structure in its metadata)")
    try:
        structure = json.loads(metadata[STRUCTURE_KEY])
    except (ValueError, RecursionError):
        raise StateFormatError("its structure is not valid JSON") from None
    return _rebuild(structure, tensors, 0)


def _rebuild(value: Any, tensors: dict[str, torch.Tensor], depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise StateFormatError("its structure is nested too deeply")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_rebuild(v, tensors, depth + 1) for v in value]
    if isinstance(value, dict) and len(value) == 1:
        ((tag, body),) = value.items()
        if tag == "__tensor__" and isinstance(body, str):
            if body not in tensors:
                raise StateFormatError(f"its structure names a tensor {body!r} that is not in the file")
            return tensors[body]
        if tag == "__tuple__" and isinstance(body, list):
            return tuple(_rebuild(v, tensors, depth + 1) for v in body)
        if tag == "__dict__" and isinstance(body, list):
            out = {}
            for pair in body:
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise StateFormatError("its structure has a malformed table entry")
                key = _rebuild(pair[0], tensors, depth + 1)
                if not isinstance(key, (bool, int, float, str)) and key is not None:
                    raise StateFormatError("its structure has a table key that is not a number or text")
                out[key] = _rebuild(pair[1], tensors, depth + 1)
            return out
    raise StateFormatError(f"its structure holds an unknown entry {str(value)[:60]!r}")


def _short(exc: BaseException) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
