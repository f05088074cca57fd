"""The Flux section of ``bench/gpu_check.py``: a real-size FLUX.1 transformer skeleton (random
weights, the true 19 double + 38 single blocks, 3072 wide, bf16) built on the GPU, 1024x1024.

Measures one sampling step (a transformer call at 1024², 4096 image + 512 text tokens,
distilled guidance) bare and with 3 kohya-layout LoRAs (rank 16, fused q/k/v, every double
block's attention and every single block's linear1/linear2) patched in, the patch time of
the 3, the time of a slider move (one adapter re-patched) and the peak VRAM of a step, bare
and patched. ``--smoke`` runs the same code on the tiny Flux on the CPU at 64².

The text encoders and VAE are the tiny ones: a step is the transformer's work, and the
skeleton needs no download.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

FULL = dict(
    patch_size=1,
    in_channels=64,
    num_layers=19,
    num_single_layers=38,
    attention_head_dim=128,
    num_attention_heads=24,
    joint_attention_dim=4096,
    pooled_projection_dim=768,
    guidance_embeds=True,
    axes_dims_rope=(16, 56, 56),
)


def _pipeline(smoke: bool, device: str):
    import torch

    from app.core.families import Family
    from app.engine.families import engine

    pipe = engine(Family.FLUX1).build_tiny(seed=0)
    if not smoke:
        from diffusers import FluxTransformer2DModel

        with torch.device("meta"):
            big = FluxTransformer2DModel(**FULL)
        big = big.to_empty(device=device).to(torch.bfloat16)
        gen = torch.Generator(device).manual_seed(0)
        with torch.no_grad():
            for p in big.parameters():
                p.normal_(0.0, 0.02, generator=gen)
        pipe.transformer = big.eval()
    pipe.transformer.to(device)
    return pipe


def _write_lora(transformer, path: Path, seed: int, rank: int = 16) -> Path:
    import torch
    from safetensors.torch import save_file

    from app.engine import flux_keys

    modules = dict(transformer.named_modules())
    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for bfl, pieces in flux_keys.bfl_layers(transformer).items():
        if not bfl.endswith(("img_attn.qkv", "txt_attn.qkv", "img_attn.proj", "txt_attn.proj", "linear1", "linear2")):
            continue
        rows = sum(b - a for p in pieces for a, b in p.rows)
        inp = modules[pieces[0].path].weight.shape[1]
        name = "lora_unet_" + bfl.replace(".", "_")
        tensors[f"{name}.lora_down.weight"] = (torch.randn(rank, inp, generator=gen) / math.sqrt(inp)).bfloat16()
        tensors[f"{name}.lora_up.weight"] = (torch.randn(rows, rank, generator=gen) * 0.01).bfloat16()
        tensors[f"{name}.alpha"] = torch.tensor(float(rank))
    save_file(tensors, str(path), metadata={"ss_base_model_version": "flux1"})
    return path


def _step_s(transformer, size: int, repeats: int = 3) -> float:
    import torch
    from real_size import sync

    device, dtype = transformer.device, transformer.dtype
    cfg = transformer.config
    seq, text = (size // 16) ** 2, 512 if size >= 512 else 32
    inputs = {
        "hidden_states": torch.randn(1, seq, cfg.in_channels, device=device, dtype=dtype),
        "encoder_hidden_states": torch.randn(1, text, cfg.joint_attention_dim, device=device, dtype=dtype),
        "pooled_projections": torch.randn(1, cfg.pooled_projection_dim, device=device, dtype=dtype),
        "timestep": torch.tensor([0.5], device=device, dtype=dtype),
        "img_ids": torch.zeros(seq, 3, device=device),
        "txt_ids": torch.zeros(text, 3, device=device),
        "guidance": torch.tensor([3.5], device=device, dtype=dtype),
    }
    times = []
    with torch.inference_mode():
        transformer(**inputs)  # warm-up
        for _ in range(repeats):
            sync(device)
            start = time.perf_counter()
            transformer(**inputs)
            sync(device)
            times.append(time.perf_counter() - start)
    return min(times)


def _peak_gb(fn) -> float | None:
    import torch

    if not torch.cuda.is_available():
        fn()
        return None
    torch.cuda.reset_peak_memory_stats()
    fn()
    return torch.cuda.max_memory_allocated() / 2**30


def check_flux(work: str, smoke: bool, device: str) -> dict:
    """Bare and 3-LoRA step time at 1024² (64² smoke), patch and slider times, peak VRAM."""
    from real_size import sync

    from app.core.configs import AdapterEntry
    from app.core.families import Family
    from app.engine.patching import AdapterMixer

    size = 64 if smoke else 1024
    started = time.perf_counter()
    pipe = _pipeline(smoke, device)
    out: dict = {"size": size, "build_s": time.perf_counter() - started}
    t = pipe.transformer
    out["params_b"] = sum(p.numel() for p in t.parameters()) / 1e9
    out["bare_peak_vram_gb"] = _peak_gb(lambda: out.__setitem__("bare_step_s", _step_s(t, size)))
    files = [_write_lora(t, Path(work) / f"flux-r{i}.safetensors", seed=i) for i in range(3)]
    mixer = AdapterMixer(pipe, Family.FLUX1)  # built in memory: W0 kept in (pinned) CPU memory
    entries = [AdapterEntry(path=str(f), weight=0.5) for f in files]
    start = time.perf_counter()
    report = mixer.set_mix(entries)
    sync(device)
    out["patch_3_s"] = time.perf_counter() - start
    if report.refused:
        raise RuntimeError(report.refused[0]["message"])
    out["lora3_peak_vram_gb"] = _peak_gb(lambda: out.__setitem__("lora3_step_s", _step_s(t, size)))
    out["lora3_vs_bare"] = out["lora3_step_s"] / out["bare_step_s"]
    out["bare_its"], out["lora3_its"] = 1 / out["bare_step_s"], 1 / out["lora3_step_s"]
    entries[0] = AdapterEntry(path=str(files[0]), weight=0.9)
    start = time.perf_counter()
    mixer.set_mix(entries)
    sync(device)
    out["slider_patch_s"] = time.perf_counter() - start
    out["kept_w0_gb_cpu"] = mixer.kept_bytes() / 2**30
    mixer.clear()
    return out


def summary_line(r: dict) -> str:
    vram = (
        f"; peak VRAM {r['bare_peak_vram_gb']:.1f} GB bare, {r['lora3_peak_vram_gb']:.1f} GB patched"
        if r.get("bare_peak_vram_gb") is not None
        else ""
    )
    return (
        f"  flux1 {r['size']}²: {r['bare_its']:.2f} it/s bare, {r['lora3_its']:.2f} with 3 LoRAs "
        f"(x{r['lora3_vs_bare']:.2f}); patch 3 {r['patch_3_s']:.2f} s, slider {r['slider_patch_s']:.2f} s{vram}"
    )
