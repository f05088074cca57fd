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


def lora_tag(name: str, weight: float, te_weight: float | None = None) -> str:
    """``<lora:name:0.8>``; with a different text-encoder weight ``<lora:name:te=0.5:unet=0.8>`` (A1111 reads both)."""
    if te_weight is None or te_weight == weight:
        return f"<lora:{name}:{_num(round(float(weight), 4))}>"
    return f"<lora:{name}:te={_num(round(float(te_weight), 4))}:unet={_num(round(float(weight), 4))}>"


_LORA_TAG = re.compile(r"\s*<lora:([^:>]+)((?::[^:>]*)*)>")


def parse_lora_tags(prompt: str) -> tuple[str, list[dict[str, Any]]]:
    """Take ``<lora:…>`` tags out of a prompt: (the prompt without them, [{name, weight, te_weight}])."""
    found: list[dict[str, Any]] = []

    def take(match: re.Match) -> str:
        positional: list[float] = []
        named: dict[str, float] = {}
        for item in match.group(2).split(":")[1:]:
            key, eq, value = item.partition("=")
            try:
                if eq:
                    named[key.strip()] = float(value)
                else:
                    positional.append(float(item))
            except ValueError:
                continue
        te = named.get("te", positional[0] if positional else 1.0)  # A1111: first number is te
        unet = named.get("unet", positional[1] if len(positional) > 1 else te)
        found.append({"name": match.group(1).strip(), "weight": unet, "te_weight": te if te != unet else None})
        return ""

    text = _LORA_TAG.sub(take, prompt)
    return text.strip(), found


def format_parameters(meta: dict[str, Any]) -> str:
    lines = [str(meta.get("prompt", ""))]
    tags = [
        lora_tag(str(a.get("name", "")), a.get("weight", 1.0), a.get("te_weight"))
        for a in meta.get("adapters") or []
        if a.get("name")
    ]
    if tags:
        lines[0] = " ".join(([lines[0]] if lines[0] else []) + tags)
    if meta.get("negative"):
        lines.append(f"Negative prompt: {meta['negative']}")
    fields = [
        ("Steps", meta.get("steps")),
        ("Sampler", meta.get("scheduler")),
        # Flux.1 [dev] as Forge writes it: no CFG (scale 1), the distilled guidance beside it.
        ("CFG scale", 1 if "distilled_guidance" in meta else _num(meta.get("guidance"))),
        ("Distilled CFG Scale", _num(meta.get("distilled_guidance"))),
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
            line = line[len("Negative prompt:") :].lstrip()
        (negative_lines if in_negative else prompt_lines).append(line)
    out["prompt"] = "\n".join(prompt_lines)
    out["negative"] = "\n".join(negative_lines)
    if "<lora:" in out["prompt"]:
        out["prompt"], out["adapters"] = parse_lora_tags(out["prompt"])
    for key, value in _FIELD.findall(settings):
        key, value = key.strip(), value.strip()
        if key == "Steps":
            out["steps"] = int(value)
        elif key == "Sampler":
            out["scheduler"] = value
        elif key == "CFG scale":
            out.setdefault("guidance", float(value))
        elif key == "Distilled CFG Scale":  # Forge's Flux pictures: this is the guidance to restore
            out["guidance"] = out["distilled_guidance"] = float(value)
        elif key == "Seed":
            out["seed"] = int(value)
        elif key == "Size" and "x" in value:
            w, h = value.split("x", 1)
            out["width"], out["height"] = int(w), int(h)
        elif key == "Model":
            out["model"] = value
    return out
