"""A1111-style ``parameters`` text for PNGs, so a picture documents how it was made.

Format (what AUTOMATIC1111, ComfyUI readers and Civitai parse)::

    a red cat
    Negative prompt: blurry
    Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512, Model: tiny-sd1
"""

from __future__ import annotations

import re
from typing import Any

PARAMETERS_KEY = "parameters"


def format_parameters(meta: dict[str, Any]) -> str:
    lines = [str(meta.get("prompt", ""))]
    if meta.get("negative"):
        lines.append(f"Negative prompt: {meta['negative']}")
    fields = [
        ("Steps", meta.get("steps")),
        ("Sampler", meta.get("scheduler")),
        ("CFG scale", _num(meta.get("guidance"))),
        ("Seed", meta.get("seed")),
        ("Size", f"{meta['width']}x{meta['height']}" if "width" in meta and "height" in meta else None),
        ("Model", meta.get("model")),
        ("Version", meta.get("version")),
    ]
    lines.append(", ".join(f"{k}: {_clean(v)}" for k, v in fields if v not in (None, "")))
    return "\n".join(lines)


def _num(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _clean(value: Any) -> str:
    # Commas and newlines would break the "key: value, key: value" line.
    return str(value).replace("\n", " ").replace(",", " ")


_FIELD = re.compile(r"\s*([\w ]+):\s*([^,]*)")


def parse_parameters(text: str) -> dict[str, Any]:
    """Inverse of :func:`format_parameters` (also reads most A1111 files)."""
    lines = text.strip("\n").split("\n")
    out: dict[str, Any] = {}
    settings = lines[-1] if lines and "Steps:" in lines[-1] else ""
    body = lines[:-1] if settings else lines
    prompt_lines, negative_lines, in_negative = [], [], False
    for line in body:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:"):].lstrip()
        (negative_lines if in_negative else prompt_lines).append(line)
    out["prompt"] = "\n".join(prompt_lines)
    out["negative"] = "\n".join(negative_lines)
    for key, value in _FIELD.findall(settings):
        key, value = key.strip(), value.strip()
        if key == "Steps":
            out["steps"] = int(value)
        elif key == "Sampler":
            out["scheduler"] = value
        elif key == "CFG scale":
            out["guidance"] = float(value)
        elif key == "Seed":
            out["seed"] = int(value)
        elif key == "Size" and "x" in value:
            w, h = value.split("x", 1)
            out["width"], out["height"] = int(w), int(h)
        elif key == "Model":
            out["model"] = value
    return out
