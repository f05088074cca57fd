"""Save adapters in the kohya layout that A1111, ComfyUI and diffusers all load.

Layout (DESIGN.md section 4): ``lora_unet_<module path, "." -> "_">.lora_down.weight``,
``.lora_up.weight`` and ``.alpha`` (a float32 scalar holding the real alpha, not the
rank); text encoders ``lora_te_`` (SD1/2) or ``lora_te1_`` / ``lora_te2_`` (SDXL), with
the ``text_model.`` path every tool expects. No other keys (``dora_scale`` only for DoRA).
Metadata: kohya's ``ss_*`` keys, ``modelspec.*`` and our own ``loraloom.*``.

The naming functions (:func:`kohya_key`, :func:`kohya_index`, :func:`module_path_for`)
are public: the mixing/baking code uses them to go from a file's keys back to modules.
Every write is atomic (temp file beside, then ``os.replace``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_save

from app import __version__
from app.core import families
from app.core.families import Family
from app.core.files import atomic_write_bytes, make_ordinary, replace_durably, saving
from app.engine.families import engine

UNET = "lora_unet"
TE = "lora_te"
TE1 = "lora_te1"
TE2 = "lora_te2"
DOWN, UP, ALPHA, DORA = "lora_down.weight", "lora_up.weight", "alpha", "dora_scale"


# ---------------------------------------------------------------- naming


def kohya_key(prefix: str, module_path: str) -> str:
    """``kohya_key("lora_unet", "mid_block.attentions.0.proj_in")`` -> ``lora_unet_mid_block_attentions_0_proj_in``."""
    return f"{prefix.rstrip('_')}_{module_path.replace('.', '_')}"


def te_module_path(module_path: str) -> str:
    """The text-encoder path kohya files use: always under ``text_model.``.

    transformers 5's ``CLIPTextModel`` names its layers ``encoder.layers.N`` while
    ``CLIPTextModelWithProjection`` keeps ``text_model.encoder.layers.N``; files carry the latter.
    """
    return module_path if module_path.startswith("text_model.") else f"text_model.{module_path}"


def te_prefixes(family: Family | str) -> tuple[str, ...]:
    """kohya prefixes of the text encoders, in the pipeline's order."""
    return families.spec(family).te_prefixes


def kohya_index(prefix: str, module_paths: Iterable[str]) -> dict[str, str]:
    """kohya name -> module path for one model (the reverse of :func:`kohya_key`).

    Underscores are ambiguous (``to_q`` vs ``to.q``), so the reverse lookup needs the
    model's real module names; text-encoder paths may be given with or without ``text_model.``.
    """
    is_te = prefix.rstrip("_") != UNET
    out: dict[str, str] = {}
    for path in module_paths:
        out[kohya_key(prefix, te_module_path(path) if is_te else path)] = path
    return out


def module_path_for(kohya_name: str, module_paths: Iterable[str], prefix: str | None = None) -> str | None:
    """The module path a kohya name (``lora_unet_…`` without the ``.lora_down.weight``) refers to, or None."""
    name = kohya_name.split(".", 1)[0]
    prefixes = [prefix] if prefix else [UNET, TE1, TE2, TE]
    for p in prefixes:
        if name.startswith(p.rstrip("_") + "_"):
            return kohya_index(p, module_paths).get(name)
    return None


def split_key(key: str) -> tuple[str, str]:
    """``"lora_unet_x.lora_down.weight"`` -> (``"lora_unet_x"``, ``"lora_down.weight"``)."""
    name, _, part = key.partition(".")
    return name, part


# ---------------------------------------------------------------- peft -> kohya


def peft_to_kohya(
    peft_state: Mapping[str, torch.Tensor],
    prefix: str,
    alphas: Mapping[str, float],
    *,
    is_text_encoder: bool = False,
    dtype: torch.dtype = torch.float32,
) -> dict[str, torch.Tensor]:
    """A peft adapter state dict (``<path>.lora_A.weight`` …) as kohya tensors.

    ``alphas`` maps each module path to its real alpha (peft's ``lora_alpha``, per
    module when a pattern applies); it is written as a float32 scalar.
    """
    out: dict[str, torch.Tensor] = {}
    for key, tensor in peft_state.items():
        if ".lora_A." in key:
            path, part = key.split(".lora_A.")[0], DOWN
        elif ".lora_B." in key:
            path, part = key.split(".lora_B.")[0], UP
        elif ".lora_magnitude_vector" in key:
            path, part = key.split(".lora_magnitude_vector")[0], DORA
        else:
            raise ValueError(f"unexpected adapter tensor {key!r} (only LoRA/DoRA weights are saved)")
        name = kohya_key(prefix, te_module_path(path) if is_text_encoder else path)
        value = tensor.detach().to("cpu", dtype)
        if part == DORA:
            # peft keeps one magnitude per output channel (1-D for Linear, (1, out, 1, 1) for
            # Conv2d); LyCORIS/ComfyUI read an output-axis dora_scale as (out, 1[, 1, 1]).
            out_features = value.numel()
            ndim = tensor.dim() if tensor.dim() > 1 else 2
            value = value.reshape(out_features, *([1] * (ndim - 1)))
        out[f"{name}.{part}"] = value.contiguous()
        if part == DOWN:
            if path not in alphas:
                raise ValueError(f"no alpha known for {path!r}")
            out[f"{name}.{ALPHA}"] = torch.tensor(float(alphas[path]), dtype=torch.float32)
    return out


def peft_alphas(module: torch.nn.Module, adapter: str = "default") -> dict[str, float]:
    """Module path -> real alpha of every LoRA layer of ``module`` (rank and alpha patterns applied)."""
    out: dict[str, float] = {}
    for path, layer in module.named_modules():
        scaling = getattr(layer, "lora_alpha", None)
        if isinstance(scaling, dict) and adapter in scaling:
            out[path] = float(scaling[adapter])
    return out


def kohya_to_peft(
    tensors: Mapping[str, torch.Tensor], prefix: str, module_paths: Iterable[str]
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """The reverse of :func:`peft_to_kohya` for one model: (peft state dict, alpha per module path)."""
    index = kohya_index(prefix, module_paths)
    state: dict[str, torch.Tensor] = {}
    alphas: dict[str, float] = {}
    for key, tensor in tensors.items():
        name, part = split_key(key)
        if not name.startswith(prefix.rstrip("_") + "_"):
            continue
        path = index.get(name)
        if path is None:
            raise KeyError(f"{name}: no such layer in this model")
        if part == DOWN:
            state[f"{path}.lora_A.weight"] = tensor
        elif part == UP:
            state[f"{path}.lora_B.weight"] = tensor
        elif part == ALPHA:
            alphas[path] = float(tensor.item())
        elif part == DORA:
            state[f"{path}.lora_magnitude_vector"] = tensor
    return state, alphas


# ---------------------------------------------------------------- metadata


@dataclass
class AdapterInfo:
    """What the metadata says about a saved adapter."""

    family: Family
    name: str
    rank: int
    alpha: float
    resolution: tuple[int, int]
    steps: int
    epoch: int
    learning_rate: float
    optimizer: str
    trigger: str = ""
    conv_rank: int = 0
    conv_alpha: float = 0.0
    dora: bool = False
    v_prediction: bool = False
    tag_frequency: Mapping[str, Mapping[str, int]] | None = None
    started_at: float = 0.0  # unix time
    config_toml: str = ""
    base_model: str = ""
    clip_skip: int | None = None  # None: the pipeline's own text-encoder layer (kohya writes "None")
    epochs: int = 0  # how many epochs the whole run takes (ss_num_epochs)
    num_train_images: int = 0  # training pictures times their repeats, as kohya counts them
    dataset_dirs: Mapping[str, Mapping[str, int]] | None = None  # folder -> n_repeats, img_count
    bucket_info: Mapping | None = None  # kohya's {"buckets": …, "mean_img_ar_error": …}; None: no buckets


def has_big_convs(tensors: Mapping[str, torch.Tensor]) -> bool:
    """Whether any layer is a conv with a kernel over 1x1 (what kohya's conv_dim / conv_alpha are about)."""
    return any(k.endswith(DOWN) and t.dim() == 4 and tuple(t.shape[2:]) != (1, 1) for k, t in tensors.items())


def build_metadata(info: AdapterInfo, tensors: Mapping[str, torch.Tensor] | None = None) -> dict[str, str]:
    """kohya sd-scripts' metadata for ``info`` (its train_network.py and sai_model_spec.py keys and
    formats); conv settings are claimed only when ``tensors`` holds a conv layer over 1x1."""
    family = families.spec(info.family)
    width, height = info.resolution
    network_args: dict[str, str] = {}
    if info.conv_rank and (tensors is None or has_big_convs(tensors)):
        network_args.update(conv_dim=str(info.conv_rank), conv_alpha=str(info.conv_alpha))
    if info.dora:
        network_args["dora_wd"] = "True"
    meta = {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(info.rank),
        "ss_network_alpha": _num(info.alpha),
        "ss_network_args": json.dumps(network_args),
        "ss_base_model_version": family.base_version,
        "ss_v2": str(family.ss_v2),
        "ss_v_parameterization": str(info.v_prediction),
        "ss_resolution": f"({width}, {height})",
        "ss_steps": str(info.steps),
        "ss_max_train_steps": str(info.steps),
        "ss_num_epochs": str(info.epochs),
        "ss_num_train_images": str(info.num_train_images),
        "ss_clip_skip": str(info.clip_skip),
        "ss_dataset_dirs": json.dumps(info.dataset_dirs or {}, ensure_ascii=False),
        "ss_bucket_info": json.dumps(info.bucket_info),
        "ss_epoch": str(info.epoch),
        "ss_learning_rate": _num(info.learning_rate),
        "ss_optimizer": info.optimizer,
        "ss_tag_frequency": json.dumps(info.tag_frequency or {}, ensure_ascii=False),
        "ss_output_name": info.name,
        "ss_training_started_at": _num(info.started_at),
        "ss_sd_model_name": Path(info.base_model).name if info.base_model else "",
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": family.architecture_for(info.v_prediction),
        "modelspec.implementation": family.implementation,
        "modelspec.title": info.name,
        "modelspec.resolution": f"{width}x{height}",
        "modelspec.date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
        "modelspec.trigger_phrase": info.trigger,
        "modelspec.prediction_type": "v" if info.v_prediction else "epsilon",
        "loraloom.version": __version__,
        "loraloom.config": info.config_toml,
    }
    return meta


def _num(value: float) -> str:
    return str(float(value))


# ---------------------------------------------------------------- writing


def save_kohya(path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> Path:
    """Write ``tensors`` (already in kohya layout) and ``metadata`` atomically."""
    path = Path(path)
    bad = [k for k in tensors if not k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_"))]
    if bad:
        raise ValueError(f"not a kohya LoRA key: {bad[0]!r}")
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta = {k: str(v) for k, v in metadata.items()}
    meta["sshs_model_hash"], meta["sshs_legacy_hash"] = kohya_hashes(tensors, meta)
    meta["modelspec.hash_sha256"] = modelspec_hash(tensors)
    data = safetensors_save(tensors, metadata=meta)
    atomic_write_bytes(path, data)
    return path


def kohya_hashes(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> tuple[str, str]:
    """(sshs_model_hash, sshs_legacy_hash) as kohya sd-scripts defines them (A1111's additional-networks
    shows them): the file written with the ``ss_*`` metadata only; sha256 of everything after the header,
    and the first 8 hex digits of the sha256 of the 64 KiB at offset 1 MiB."""
    import hashlib

    data = safetensors_save(dict(tensors), metadata={k: v for k, v in metadata.items() if k.startswith("ss_")})
    header = 8 + int.from_bytes(data[:8], "little")
    return hashlib.sha256(data[header:]).hexdigest(), hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]


def modelspec_hash(tensors: Mapping[str, torch.Tensor]) -> str:
    """``modelspec.hash_sha256`` as kohya's sai_model_spec.precalculate_safetensors_hashes defines it:
    "0x" + the sha256 of each tensor saved alone (the bytes after its header), in name order."""
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(tensors):
        data = safetensors_save({"tensor": tensors[key].contiguous()})
        digest.update(data[8 + int.from_bytes(data[:8], "little") :])
    return "0x" + digest.hexdigest()


def save_diffusers_copy(
    folder: str | Path,
    family: Family,
    unet_state: Mapping[str, torch.Tensor],
    unet_config: dict,
    te_states: list[Mapping[str, torch.Tensor]] | None = None,
    te_configs: list[dict] | None = None,
) -> Path:
    """A diffusers/peft-layout copy (``pytorch_lora_weights.safetensors`` with the LoRA config
    in the metadata, so alpha survives) for ``pipe.load_lora_weights(folder)``. Atomic."""
    folder = Path(folder)
    with saving(folder):
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
    te_states = te_states or []
    te_configs = te_configs or []
    try:
        make_ordinary(tmp, folder=True)  # mkdtemp makes it private; the result is shared
        denoiser = engine(family).denoiser_name  # unet_lora_layers, transformer_lora_layers (Flux)
        kwargs: dict = {f"{denoiser}_lora_layers": dict(unet_state), f"{denoiser}_lora_adapter_metadata": unet_config}
        names = ("text_encoder", "text_encoder_2")
        for name, state, config in zip(names, te_states, te_configs):
            kwargs[f"{name}_lora_layers"] = dict(state)
            kwargs[f"{name}_lora_adapter_metadata"] = config
        cls = engine(family).pipeline_class()
        with saving(folder):
            cls.save_lora_weights(str(tmp), **kwargs)
            for written in tmp.iterdir():  # safetensors writes its files private (0600)
                make_ordinary(written)
            old = None
            if folder.exists():
                old = folder.parent / f".{folder.name}.old-{os.getpid()}"
                os.replace(folder, old)
            replace_durably(tmp, folder)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder / "pytorch_lora_weights.safetensors"


__all__ = [
    "ALPHA",
    "AdapterInfo",
    "DORA",
    "DOWN",
    "TE",
    "TE1",
    "TE2",
    "UNET",
    "UP",
    "build_metadata",
    "kohya_index",
    "kohya_key",
    "has_big_convs",
    "kohya_to_peft",
    "modelspec_hash",
    "module_path_for",
    "peft_alphas",
    "peft_to_kohya",
    "save_diffusers_copy",
    "save_kohya",
    "split_key",
    "te_module_path",
    "te_prefixes",
]
