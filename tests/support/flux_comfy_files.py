"""A diffusers Flux folder written as the files ComfyUI and Forge users keep: the transformer in
BFL names (bare or under ``model.diffusion_model.``, bf16-or-fp32 or fp8), ``clip_l.safetensors``
(transformers' names), ``t5xxl_fp16.safetensors`` (transformers' names, the tied embedding once)
and ``ae.safetensors`` (LDM names); or all four in one checkpoint under ComfyUI's prefixes."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from app.engine import flux_state
from app.engine.skeleton import _vae_ldm


def _folder_state(folder: Path, component: str) -> dict[str, torch.Tensor]:
    files = sorted((folder / component).glob("*.safetensors"))
    out: dict[str, torch.Tensor] = {}
    for f in files:
        out.update(load_file(f))
    return out


def transformer_bfl(folder: Path) -> dict[str, torch.Tensor]:
    config = json.loads((folder / "transformer" / "config.json").read_text())
    return flux_state.to_bfl(_folder_state(folder, "transformer"), config)


def ae_ldm(folder: Path) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in _folder_state(folder, "vae").items():
        ldm = _vae_ldm(name)
        out[ldm] = t.reshape(*t.shape, 1, 1) if ".attn_1." in ldm and t.ndim == 2 else t
    return out


def clip_l(folder: Path) -> dict[str, torch.Tensor]:
    # transformers >= 5.6 saves CLIPTextModel without its ``text_model.`` level; the files keep it,
    # and ComfyUI's clip_l.safetensors carries the projection of CLIP's joint space too.
    state = {
        k if k.startswith("text_model.") else "text_model." + k: v
        for k, v in _folder_state(folder, "text_encoder").items()
    }
    state["text_projection.weight"] = torch.eye(state["text_model.final_layer_norm.weight"].shape[0])
    return state


def t5xxl(folder: Path) -> dict[str, torch.Tensor]:
    state = _folder_state(folder, "text_encoder_2")
    state.pop("encoder.embed_tokens.weight", None)  # tied to shared.weight; the files keep it once
    return state


def _fp8(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in state.items()}


def write_files(folder: Path, out: Path, *, prefix: str = "", fp8: bool = False) -> dict[str, Path]:
    """The four files of ``folder`` in ``out``, by ComfyUI's names: key -> path."""
    out.mkdir(parents=True, exist_ok=True)
    bfl = transformer_bfl(folder)
    if fp8:
        bfl = _fp8(bfl)
    name = "flux1-dev-fp8.safetensors" if fp8 else "flux1-dev.safetensors"
    paths = {
        "main": out / name,
        "clip_l": out / "clip_l.safetensors",
        "t5": out / "t5xxl_fp16.safetensors",
        "vae": out / "ae.safetensors",
    }
    save_file({prefix + k: v.contiguous() for k, v in bfl.items()}, str(paths["main"]))
    save_file(clip_l(folder), str(paths["clip_l"]))
    save_file(t5xxl(folder), str(paths["t5"]))
    save_file(ae_ldm(folder), str(paths["vae"]))
    return paths


def write_all_in_one(folder: Path, path: Path) -> Path:
    state = {"model.diffusion_model." + k: v for k, v in transformer_bfl(folder).items()}
    state.update({"text_encoders.clip_l.transformer." + k: v for k, v in clip_l(folder).items()})
    state.update({"text_encoders.t5xxl.transformer." + k: v for k, v in t5xxl(folder).items()})
    state.update({"vae." + k: v for k, v in ae_ldm(folder).items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def configs_only(folder: Path, out: Path, *, t5_tokenizer: bool = True) -> Path:
    """The folder's configs and tokenizers, no weights (what ``config=`` points at)."""
    for p in folder.rglob("*"):
        if p.is_file() and p.suffix != ".safetensors":
            if not t5_tokenizer and p.parent.name == "tokenizer_2":
                continue
            target = out / p.relative_to(folder)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(p.read_bytes())
    return out
