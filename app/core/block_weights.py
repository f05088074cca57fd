"""Per-block weights of an adapter, in the syntax of the LoRA Block Weight extension for A1111.

A block-weight spec is what users type after ``lbw=`` in ``<lora:name:0.8:lbw=…>``: a preset
name (``MIDD``) or comma-separated numbers, one per block. The extension's short forms are
accepted for every SD family as it accepts them: 17 or 26 values (SD 1.x/2.x), 12 or 20
(SDXL); a short form leaves the blocks it does not name at 0 (the extension's ``to26``). The
full block list of a family is ``FamilySpec.blocks``; which block a layer belongs to is
decided from its name alone (:func:`block_of`), so ``loraloom inspect`` and the GUI need no
torch. Users' own presets are a TOML file in the config folder (:func:`user_presets_path`).

Layers outside every block (the time embedding, ``conv_out``, SDXL's size embedding) keep
the adapter's full weight, as the extension leaves them.
"""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

import tomli_w

from app.core import paths
from app.core.families import FALLBACK, FAMILIES, BlockLayout, Family, FamilySpec, spec

# The extension's short forms (BLOCKID17 and BLOCKID12 of its scripts/lora_block_weight.py):
# the blocks a plain (attention-only) LoRA of SD 1.x / SDXL has layers in.
FORM17 = (
    "BASE",
    "IN01",
    "IN02",
    "IN04",
    "IN05",
    "IN07",
    "IN08",
    "MID",
    *(f"OUT{i:02}" for i in range(3, 12)),
)
FORM12 = ("BASE", "IN04", "IN05", "IN07", "IN08", "MID", *(f"OUT{i:02}" for i in range(6)))

# Vector length -> the blocks its values are for: the short forms and each family's full list.
FORMS: dict[int, tuple[str, ...]] = {17: FORM17, 12: FORM12, **{len(f.blocks): f.blocks for f in FAMILIES if f.blocks}}

# The extension's built-in presets (DEF_WEIGHT_PRESET in scripts/lora_block_weight.py, and its README).
PRESETS: dict[str, str] = {
    "NONE": "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0",
    "ALL": "1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1",
    "INS": "1,1,1,1,0,0,0,0,0,0,0,0,0,0,0,0,0",
    "IND": "1,0,0,0,1,1,1,0,0,0,0,0,0,0,0,0,0",
    "INALL": "1,1,1,1,1,1,1,0,0,0,0,0,0,0,0,0,0",
    "MIDD": "1,0,0,0,1,1,1,1,1,1,1,1,0,0,0,0,0",
    "OUTD": "1,0,0,0,0,0,0,0,1,1,1,1,0,0,0,0,0",
    "OUTS": "1,0,0,0,0,0,0,0,0,0,0,0,1,1,1,1,1",
    "OUTALL": "1,0,0,0,0,0,0,0,1,1,1,1,1,1,1,1,1",
    "ALL0.5": "0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5,0.5",
    "FLUXALL": ",".join(["1"] * 61),
}
LIMIT = 10.0  # a block factor, like an adapter weight, stays within ±10
PRESETS_FILE = "block_presets.toml"


class BlockWeightError(ValueError):
    """A block-weight spec or preset file is wrong; the message says which and why."""


# ---------------------------------------------------------------- which block a layer is in

_SGM_IN = re.compile(r"input_blocks[._](\d+)[._]")
_SGM_OUT = re.compile(r"output_blocks[._](\d+)[._]")
_DOWN = re.compile(r"down_blocks[._](\d+)[._](?:(?:attentions|resnets)[._](\d+)|(downsamplers))")
_UP = re.compile(r"up_blocks[._](\d+)[._](?:(?:attentions|resnets)[._](\d+)|(upsamplers))")
# Text-encoder names of every layout LoRA Loom reads (kohya, diffusers, peft, ComfyUI), by encoder.
_SECOND_TEXT = re.compile(r"(^|[._])(lora_te[23]_|text_encoder_2[._]|clip_g[._]|t5xxl[._])")
_TEXT = re.compile(r"(^|[._])(lora_te1?_|text_encoder[._]|text_model|clip_l[._])")
# Flux (the extension's get_flux_blocks, with diffusers' names beside BFL's).
_DOUBLE = re.compile(r"(?<!single_)(?:double_blocks|transformer_blocks)[._](\d+)([._]|$)")
_SINGLE = re.compile(r"(?:single_blocks|single_transformer_blocks)[._](\d+)([._]|$)")
_FLUX_IN = re.compile(
    r"(^|[._])(img_in|txt_in|time_in|vector_in|guidance_in|x_embedder|context_embedder|time_text_embed)"
)
_FLUX_OUT = re.compile(r"(^|[._])(final_layer|norm_out|proj_out)([._]|$)")


def block_of(name: str, family: Family | str = FALLBACK) -> str | None:
    """The block of ``family`` a layer named ``name`` is in, by its name in any layout (None: no block).

    Diffusers UNet names are turned into the original (SGM) numbering assuming the SD UNet's
    three slots per level (two resnets or attentions and a down/upsampler), as every SD 1.x,
    2.x and SDXL UNet has.
    """
    fam = spec(family)
    if fam.block_layout is BlockLayout.NONE:
        return None
    second = _SECOND_TEXT.search(name)
    if second or _TEXT.search(name):
        return fam.text_blocks[min(1 if second else 0, len(fam.text_blocks) - 1)]
    if fam.block_layout is BlockLayout.FLUX_DIT:
        return _flux_block(name)
    return _unet_block(name)


def _unet_block(name: str) -> str | None:
    if "middle_block" in name or "mid_block" in name:
        return "MID"
    m = _SGM_IN.search(name)
    if m:
        return f"IN{int(m.group(1)):02}"
    m = _SGM_OUT.search(name)
    if m:
        return f"OUT{int(m.group(1)):02}"
    m = _DOWN.search(name)
    if m:
        level = int(m.group(1))
        return f"IN{3 * level + 3:02}" if m.group(3) else f"IN{3 * level + int(m.group(2)) + 1:02}"
    m = _UP.search(name)
    if m:
        level = int(m.group(1))
        return f"OUT{3 * level + 2:02}" if m.group(3) else f"OUT{3 * level + int(m.group(2)):02}"
    if re.search(r"(^|[._])conv_in([._]|$)", name):
        return "IN00"
    return None


def _flux_block(name: str) -> str | None:
    m = _SINGLE.search(name)
    if m:
        return f"S{int(m.group(1)):02}"
    m = _DOUBLE.search(name)
    if m:
        return f"D{int(m.group(1)):02}"
    if _FLUX_IN.search(name):
        return "IN"
    if _FLUX_OUT.search(name):
        return "OUT"
    return None


# ---------------------------------------------------------------- specs -> vectors


def accepted_lengths(family: Family | str) -> tuple[int, ...]:
    """The vector lengths a family takes: every form naming one of its blocks (17/26/12/20 for SD)."""
    blocks = set(spec(family).blocks)
    return tuple(sorted(n for n, names in FORMS.items() if blocks & set(names)))


def presets(user: dict[str, str] | None = None) -> dict[str, str]:
    """Built-in presets, then the user's (a user preset of the same name wins)."""
    return {**PRESETS, **(user if user is not None else load_user_presets())}


def parse_numbers(text: str, lengths: tuple[int, ...], *, where: str = "block weights") -> list[float]:
    """``0,1,0.5,…`` -> numbers, checked for count and range; BlockWeightError names the problem."""
    items = [i.strip() for i in text.split(",")]
    values: list[float] = []
    for item in items:
        if item[:1] in ("R", "U", "X"):
            raise BlockWeightError(f"{where} {text!r}: random values (R, U, X) are not supported; write numbers")
        try:
            value = float(item)
        except ValueError:
            raise BlockWeightError(f"{where} {text!r}: {item!r} is not a number") from None
        if not math.isfinite(value) or abs(value) > LIMIT:
            raise BlockWeightError(f"{where} {text!r}: {item} must be between -{LIMIT:g} and {LIMIT:g}")
        values.append(value)
    if len(values) not in lengths:
        counts = " or ".join(filter(None, (", ".join(str(n) for n in lengths[:-1]), str(lengths[-1]))))
        raise BlockWeightError(f"{where} {text!r}: {len(values)} values; give {counts} values, or a preset name")
    return values


def _numbers_of(text: str, lengths: tuple[int, ...], named: dict[str, str]) -> list[float]:
    text = text.strip()
    if text in named:
        return parse_numbers(named[text], lengths, where=f"block-weight preset {text}")
    if "," not in text and not re.fullmatch(r"[-+\d.eE]+", text):
        known = ", ".join(list(named)[:12])
        raise BlockWeightError(f"block weights {text!r}: no preset has this name (presets: {known}, …)")
    return parse_numbers(text, lengths)


def check(text: str, user: dict[str, str] | None = None) -> None:
    """Raise BlockWeightError when ``text`` is no valid spec for any family (a check before the model is known)."""
    if text.strip():
        _numbers_of(text, tuple(sorted(FORMS)), presets(user))


def vector(text: str, family: Family | str, user: dict[str, str] | None = None) -> tuple[float, ...] | None:
    """The factor of each of the family's blocks for ``text`` (None for an empty spec: all 1)."""
    if not text.strip():
        return None
    fam = spec(family)
    if not fam.blocks:
        raise BlockWeightError(f"block weights {text!r}: {fam.label} adapters have no per-block weights yet")
    values = _numbers_of(text, accepted_lengths(fam.id), presets(user))
    given = dict(zip(FORMS[len(values)], values))
    return tuple(given.get(block, 0.0) for block in fam.blocks)


def spec_of(values: tuple[float, ...] | list[float], family: Family | str, user: dict[str, str] | None = None) -> str:
    """The spec to keep for a vector: "" when every block is 1, a preset's name when one gives
    exactly these factors (so PNGs carry ``lbw=MIDD`` as A1111 users write it), else the numbers."""
    values = tuple(float(v) for v in values)
    if uniform(values):
        return ""
    for name in presets_for(family, user):
        if vector(name, family, user) == values:
            return name
    return format_vector(values)


def presets_for(family: Family | str, user: dict[str, str] | None = None) -> list[str]:
    """The preset names a family can use (built-in first, then the user's), in order."""
    lengths = accepted_lengths(family)
    named = presets(user)
    return [name for name, text in named.items() if text.count(",") + 1 in lengths]


def uniform(values: tuple[float, ...] | None) -> bool:
    """True when every block gets the adapter's weight as it is (no glyph on the row)."""
    return values is None or all(v == 1.0 for v in values)


def format_vector(values: tuple[float, ...] | list[float]) -> str:
    """``1,0,0.5`` (what a copy puts on the clipboard and a PNG carries)."""
    return ",".join(_short(v) for v in values)


def _short(value: float) -> str:
    value = round(float(value), 4)
    return str(int(value)) if value.is_integer() else f"{value:g}"


def factor_of(name: str, family: FamilySpec, values: tuple[float, ...] | None) -> float:
    """The factor a layer named ``name`` gets (1 outside every block or without a vector)."""
    if values is None:
        return 1.0
    block = block_of(name, family.id)
    if block is None or block not in family.blocks:
        return 1.0
    return values[family.blocks.index(block)]


# ---------------------------------------------------------------- user presets (TOML)


def user_presets_path() -> Path:
    return paths.config_dir() / PRESETS_FILE


def load_user_presets(path: Path | None = None) -> dict[str, str]:
    """The user's presets ``{name: "1,0,…"}``; a missing file is none. BlockWeightError names a bad file."""
    path = path or user_presets_path()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise BlockWeightError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise BlockWeightError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    table = data.get("presets", {})
    if not isinstance(table, dict):
        raise BlockWeightError(f'{path}: [presets] must be a table of name = "1,0,…"')
    out: dict[str, str] = {}
    for name, value in table.items():
        text = format_vector(value) if isinstance(value, list) and _all_numbers(value) else value
        if not isinstance(text, str):
            raise BlockWeightError(f'{path}: preset {name} must be numbers like "1,0,0.5", not {value!r}')
        parse_numbers(text, tuple(sorted(FORMS)), where=f"{path}: preset {name}")
        out[str(name)] = text
    return out


def save_user_preset(name: str, values: tuple[float, ...] | list[float], path: Path | None = None) -> None:
    """Add or replace one user preset (written atomically; the other presets are kept)."""
    from app.core.files import atomic_write_text

    name = name.strip()
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name) or "," in name:
        raise BlockWeightError(f"preset name {name!r}: use letters, digits, '.', '_' or '-'")
    path = path or user_presets_path()
    table = load_user_presets(path)
    table[name] = format_vector(values)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, tomli_w.dumps({"presets": table}))


def _all_numbers(items: list) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items)
