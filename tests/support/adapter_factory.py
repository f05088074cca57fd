"""Make adapter files of every layout for a tiny pipeline, with seeded random factors.

The layers and the key names follow what real trainers write (kohya sd-scripts, LyCORIS,
diffusers, peft), so the reading code is exercised on the real layouts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from app.engine.layer_index import _to_sgm, sgm_prefixes
from app.engine.lora_files import te_module_path

ATTN = ("to_q", "to_k", "to_v", "to_out.0")
TE_ATTN = ("q_proj", "k_proj", "v_proj", "out_proj")
BASE_VERSION = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0"}


def unet_layers(pipe, *, convs: bool = False, proj: bool = False) -> dict[str, nn.Module]:
    out = {}
    for path, m in pipe.unet.named_modules():
        if (
            isinstance(m, nn.Linear)
            and path.endswith(ATTN)
            or proj
            and path.endswith(("proj_in", "proj_out"))
            or convs
            and isinstance(m, nn.Conv2d)
            and path.endswith(("conv1", "conv2"))
            and "resnets" in path
        ):
            out[path] = m
    return out


def te_layers(encoder) -> dict[str, nn.Module]:
    return {p: m for p, m in encoder.named_modules() if isinstance(m, nn.Linear) and p.endswith(TE_ATTN)}


def _factors(gen: torch.Generator, weight: torch.Tensor, rank: int, strength: float):
    out, inp = weight.shape[0], weight.shape[1]
    kernel = tuple(weight.shape[2:])
    down = torch.randn((rank, inp) + kernel, generator=gen) / math.sqrt(inp * max(1, math.prod(kernel)))
    up = torch.randn((out, rank) + ((1, 1) if kernel else ()), generator=gen) * strength / math.sqrt(rank)
    return down, up


def _meta(family: str, title: str, extra: dict | None = None) -> dict[str, str]:
    meta = {
        "ss_network_module": "networks.lora",
        "ss_base_model_version": BASE_VERSION[family],
        "modelspec.title": title,
    }
    meta.update(extra or {})
    return meta


def kohya_lora(
    pipe,
    path: Path,
    *,
    family: str = "sd1",
    seed: int = 0,
    rank: int = 4,
    alpha: float = 2.0,
    strength: float = 1.0,
    te: bool = True,
    convs: bool = False,
    proj: bool = False,
    sgm: bool = False,
    trigger: str = "",
    metadata: bool = True,
    unet: bool = True,
) -> Path:
    """A kohya LoRA (LoCon when ``convs``): ``lora_unet_*``/``lora_te*_`` with float32 alpha."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    prefixes = sgm_prefixes(pipe.unet) if sgm else {}

    def add(name: str, module: nn.Module) -> None:
        down, up = _factors(gen, module.weight.detach(), rank, strength)
        sd[f"{name}.lora_down.weight"] = down.contiguous()
        sd[f"{name}.lora_up.weight"] = up.contiguous()
        sd[f"{name}.alpha"] = torch.tensor(float(alpha))

    for p, m in (unet_layers(pipe, convs=convs, proj=proj) if unet else {}).items():
        add("lora_unet_" + (_to_sgm(p, prefixes) if sgm else p).replace(".", "_"), m)
    if te:
        xl = getattr(pipe, "text_encoder_2", None) is not None
        for p, m in te_layers(pipe.text_encoder).items():
            add(("lora_te1_" if xl else "lora_te_") + te_module_path(p).replace(".", "_"), m)
        if xl:
            for p, m in te_layers(pipe.text_encoder_2).items():
                add("lora_te2_" + te_module_path(p).replace(".", "_"), m)
    meta = _meta(family, path.stem, {"ss_network_dim": str(rank), "ss_network_alpha": str(alpha)})
    if trigger:
        meta["modelspec.trigger_phrase"] = trigger
    save_file(sd, str(path), metadata=meta if metadata else None)
    return path


def diffusers_lora(pipe, path: Path, *, seed: int = 0, rank: int = 4, strength: float = 1.0, te: bool = True) -> Path:
    """diffusers/peft keys as ``save_lora_weights`` writes them: ``unet.<path>.lora_A.weight`` (scale 1)."""
    gen = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    parts = [("unet", unet_layers(pipe))]
    if te:
        parts.append(("text_encoder", te_layers(pipe.text_encoder)))
    for prefix, layers in parts:
        for p, m in layers.items():
            down, up = _factors(gen, m.weight.detach(), rank, strength)
            p = te_module_path(p) if prefix != "unet" else p
            sd[f"{prefix}.{p}.lora_A.weight"] = down.contiguous()
            sd[f"{prefix}.{p}.lora_B.weight"] = up.contiguous()
    save_file(sd, str(path))
    return path


def peft_lora(pipe, path: Path, *, seed: int = 0, rank: int = 4, alpha: float = 8.0) -> Path:
    """peft's own save of the UNet: ``base_model.model.<path>.lora_A.weight`` + adapter_config.json."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for p, m in unet_layers(pipe).items():
        down, up = _factors(gen, m.weight.detach(), rank, 1.0)
        sd[f"base_model.model.{p}.lora_A.weight"] = down.contiguous()
        sd[f"base_model.model.{p}.lora_B.weight"] = up.contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    (path.parent / "adapter_config.json").write_text(json.dumps({"r": rank, "lora_alpha": alpha, "peft_type": "LORA"}))
    return path


def loha(
    pipe, path: Path, *, family: str = "sd1", seed: int = 0, rank: int = 4, alpha: float = 4.0, strength: float = 1.0
) -> Path:
    """LyCORIS LoHa: ``hada_w1_a`` (out, r), ``hada_w1_b`` (r, in), w2 the same, alpha."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for p, m in unet_layers(pipe).items():
        out, inp = m.weight.shape[:2]
        name = "lora_unet_" + p.replace(".", "_")
        sd[f"{name}.hada_w1_a"] = torch.randn(out, rank, generator=gen) * strength / math.sqrt(rank)
        sd[f"{name}.hada_w1_b"] = torch.randn(rank, inp, generator=gen) / math.sqrt(inp)
        sd[f"{name}.hada_w2_a"] = torch.randn(out, rank, generator=gen) / math.sqrt(rank)
        sd[f"{name}.hada_w2_b"] = torch.randn(rank, inp, generator=gen)
        sd[f"{name}.alpha"] = torch.tensor(float(alpha))
    save_file(sd, str(path), metadata=_meta(family, path.stem, {"ss_network_module": "lycoris.kohya"}))
    return path


def lokr(
    pipe, path: Path, *, family: str = "sd1", seed: int = 0, rank: int = 2, alpha: float = 2.0, strength: float = 1.0
) -> Path:
    """LyCORIS LoKr: ``lokr_w1`` (a, c) full, ``lokr_w2_a`` (b, r) @ ``lokr_w2_b`` (r, d); out = a·b, in = c·d."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for p, m in unet_layers(pipe).items():
        out, inp = m.weight.shape[:2]
        a, c = 4, 4
        b, d = out // a, inp // c
        name = "lora_unet_" + p.replace(".", "_")
        sd[f"{name}.lokr_w1"] = torch.randn(a, c, generator=gen)
        sd[f"{name}.lokr_w2_a"] = torch.randn(b, rank, generator=gen) * strength / math.sqrt(rank)
        sd[f"{name}.lokr_w2_b"] = torch.randn(rank, d, generator=gen) / math.sqrt(inp)
        sd[f"{name}.alpha"] = torch.tensor(float(alpha))
    save_file(sd, str(path), metadata=_meta(family, path.stem, {"ss_network_module": "lycoris.kohya"}))
    return path


def dora(
    pipe, path: Path, *, family: str = "sd1", seed: int = 0, rank: int = 4, alpha: float = 4.0, strength: float = 1.0
) -> Path:
    """A kohya LoRA with DoRA magnitudes (``dora_scale``, one per output row, as LyCORIS writes it)."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for p, m in unet_layers(pipe).items():
        w = m.weight.detach()
        down, up = _factors(gen, w, rank, strength)
        name = "lora_unet_" + p.replace(".", "_")
        sd[f"{name}.lora_down.weight"] = down.contiguous()
        sd[f"{name}.lora_up.weight"] = up.contiguous()
        sd[f"{name}.alpha"] = torch.tensor(float(alpha))
        norms = w.reshape(w.shape[0], -1).norm(dim=1, keepdim=True)
        sd[f"{name}.dora_scale"] = norms * (1.0 + 0.5 * torch.rand(norms.shape, generator=gen))
    save_file(sd, str(path), metadata=_meta(family, path.stem))
    return path


def locon_mid(pipe, path: Path, *, family: str = "sd1", seed: int = 0, rank: int = 4, alpha: float = 4.0) -> Path:
    """LoCon with tucker ``lora_mid`` on the 3x3 resnet convs."""
    gen = torch.Generator().manual_seed(seed)
    sd = {}
    for p, m in unet_layers(pipe, convs=True).items():
        w = m.weight.detach()
        name = "lora_unet_" + p.replace(".", "_")
        if w.dim() == 4:
            out, inp, kh, kw = w.shape
            sd[f"{name}.lora_down.weight"] = torch.randn(rank, inp, 1, 1, generator=gen) / math.sqrt(inp)
            sd[f"{name}.lora_mid.weight"] = torch.randn(rank, rank, kh, kw, generator=gen) / (3 * math.sqrt(rank))
            sd[f"{name}.lora_up.weight"] = torch.randn(out, rank, 1, 1, generator=gen) / math.sqrt(rank)
        else:
            down, up = _factors(gen, w, rank, 1.0)
            sd[f"{name}.lora_down.weight"], sd[f"{name}.lora_up.weight"] = down.contiguous(), up.contiguous()
        sd[f"{name}.alpha"] = torch.tensor(float(alpha))
    save_file(sd, str(path), metadata=_meta(family, path.stem, {"ss_network_module": "lycoris.kohya"}))
    return path


def render_np(pipe, prompt: str = "a red square", seed: int = 1, steps: int = 3):
    """A float picture straight from the pipeline (no PNG rounding), for exact comparisons."""
    import torch

    generator = torch.Generator("cpu").manual_seed(seed)
    with torch.inference_mode():
        return pipe(
            prompt=prompt,
            num_inference_steps=steps,
            guidance_scale=5.0,
            width=64,
            height=64,
            generator=generator,
            output_type="np",
        ).images[0]


def weights_of(pipe) -> dict[str, torch.Tensor]:
    out = {}
    for part in ("unet", "text_encoder", "text_encoder_2"):
        module = getattr(pipe, part, None)
        if module is not None:
            for name, tensor in module.state_dict().items():
                out[f"{part}.{name}"] = tensor.clone()
    return out


def not_a_lora(path: Path) -> Path:
    save_file({"model.diffusion_model.x.weight": torch.zeros(4, 4), "first_stage_model.y": torch.zeros(2)}, str(path))
    return path


def truncated_copy(source: Path, path: Path) -> Path:
    data = source.read_bytes()
    path.write_bytes(data[: len(data) - len(data) // 3])
    return path
