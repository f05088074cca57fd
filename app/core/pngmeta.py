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


def lora_tag(
    name: str, weight: float, te_weight: float | None = None, *, lbw: str = "", start: float = 0.0, stop: float = 1.0
) -> str:
    """``<lora:name:0.8>``; with a different text-encoder weight ``<lora:name:te=0.5:unet=0.8>`` (A1111 reads
    both); block weights and start/stop as the LoRA Block Weight extension reads them
    (``<lora:name:0.8:lbw=MIDD:start=0.25>``, start/stop as fractions of the steps)."""
    if te_weight is None or te_weight == weight:
        items = [_num(round(float(weight), 4))]
    else:
        items = [f"te={_num(round(float(te_weight), 4))}", f"unet={_num(round(float(weight), 4))}"]
    if lbw:
        items.append(f"lbw={lbw}")
    if 0.0 < start < 1.0:
        items.append(f"start={_num(round(float(start), 4))}")
    if 0.0 < stop < 1.0:
        items.append(f"stop={_num(round(float(stop), 4))}")
    return f"<lora:{name}:{':'.join(str(i) for i in items)}>"


_LORA_TAG = re.compile(r"\s*<lora:([^:>]+)((?::[^:>]*)*)>")


def _tag_fields(items: list[str]) -> dict[str, Any]:
    """One tag's items after the name -> {weight, te_weight, lbw?, start?, stop?} (start/stop as written)."""
    positional: list[float] = []
    named: dict[str, str] = {}
    words: list[str] = []
    for item in items:
        key, eq, value = item.partition("=")
        if eq:
            named[key.strip()] = value.strip()
            continue
        try:
            positional.append(float(item))
        except ValueError:
            words.append(item.strip())  # the extension's positional block weights: <lora:name:1:MIDD>

    def number(key: str, default: float) -> float:
        try:
            return float(named[key])
        except (KeyError, ValueError):
            return default

    te = number("te", positional[0] if positional else 1.0)  # A1111: first number is te
    unet = number("unet", positional[1] if len(positional) > 1 else te)
    out: dict[str, Any] = {"weight": unet, "te_weight": te if te != unet else None}
    lbw = named.get("lbw") or named.get("w") or (words[0] if words else "")
    if lbw:
        out["lbw"] = lbw
    start, _, stop = named.get("step", "").partition("-")  # step=START-STOP
    for key, given in (("start", named.get("start", start)), ("stop", named.get("stop", stop))):
        try:
            out[key] = float(given)
        except ValueError:
            continue
    return out


def parse_lora_tags(prompt: str) -> tuple[str, list[dict[str, Any]]]:
    """Take ``<lora:…>`` tags out of a prompt: (the prompt without them, [{name, weight, te_weight, lbw?,
    start?, stop?}]); start/stop as written (fractions, or step numbers from 1)."""
    found: list[dict[str, Any]] = []

    def take(match: re.Match) -> str:
        found.append({"name": match.group(1).strip(), **_tag_fields(match.group(2).split(":")[1:])})
        return ""

    text = _LORA_TAG.sub(take, prompt)
    return text.strip(), found


def step_fraction(value: float, steps: int | None) -> float:
    """A start/stop as the extension reads it: within (0, 1) a fraction, a whole number a step of ``steps``."""
    if 0.0 <= value < 1.0:
        return value
    return min(1.0, value / steps) if steps else 1.0


def format_parameters(meta: dict[str, Any]) -> str:
    lines = [str(meta.get("prompt", ""))]
    tags = [
        lora_tag(
            str(a.get("name", "")),
            a.get("weight", 1.0),
            a.get("te_weight"),
            lbw=str(a.get("lbw") or ""),
            start=float(a.get("start", 0.0)),
            stop=float(a.get("stop", 1.0)),
        )
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
    for adapter in out.get("adapters", []):
        for key in ("start", "stop"):
            if key in adapter:
                adapter[key] = step_fraction(adapter[key], out.get("steps"))
    return out
