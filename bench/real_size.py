"""Real-size figures on full-size skeletons (random weights, true shapes; issue 14), CPU.

1. load time of the SD1.5 and SDXL single-file skeletons (fp16, offline);
2. SDXL: patch time of 1 / 3 / 8 rank-32 kohya LoRAs on every attention and conv layer,
   the time of one slider move, and the resident memory of the patched model vs the bare one;
3. SD1.5: LoRA training step time and peak RSS at 512 px, batch 1, with and without
   gradient checkpointing, beside a bare forward/backward of the same UNet.

    .venv/bin/python bench/real_size.py [--work DIR] [--out FILE.json] [--keep]

Skeletons are written into --work (default: a temp folder, deleted at the end unless --keep;
SD1.5 2.1 GB + SDXL 6.9 GB on disk). Each measurement runs in its own process, so peak RSS
belongs to that measurement alone. Wall times on a shared machine swing; ratios are the point.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def rss_now() -> int:
    """Resident bytes now (Linux /proc; falls back to the peak elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return peak_rss()


def rss_parts() -> dict[str, int]:
    """Resident bytes by kind (Linux): anonymous (the process's own) and file-backed (mapped files)."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return {}
    fields = dict(line.split(":", 1) for line in lines if line.startswith(("RssAnon", "RssFile")))
    return {k: int(v.split()[0]) * 1024 for k, v in fields.items()}


def peak_rss() -> int:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb * 1024 if sys.platform != "darwin" else kb


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def write_lora(pipe, path: Path, seed: int, rank: int = 32, convs: bool = True, dtype=None) -> Path:
    """A random kohya LoRA (LoCon with ``convs``) on every layer our trainer targets, + text encoders."""
    import torch

    from app.core import families
    from app.core.train_config import Targets
    from app.engine.lora_files import TE, TE1, TE2, UNET, kohya_key, save_kohya, te_module_path
    from app.engine.training.network import text_target_names, unet_target_names

    dtype = dtype or torch.float16
    gen = torch.Generator().manual_seed(seed)
    modules = dict(pipe.unet.named_modules())
    layers = [
        (UNET, n, modules[n])
        for n in unet_target_names(
            pipe.unet, Targets.LOCON if convs else Targets.ATTENTION, families.by_pipeline_class(type(pipe).__name__)[0]
        )
    ]
    encoders = [pipe.text_encoder] + ([pipe.text_encoder_2] if getattr(pipe, "text_encoder_2", None) else [])
    prefixes = [TE] if len(encoders) == 1 else [TE1, TE2]
    for prefix, enc in zip(prefixes, encoders):
        te_modules = dict(enc.named_modules())
        layers += [(prefix, te_module_path(n), te_modules[n]) for n in text_target_names(enc)]
    tensors = {}
    for prefix, name, module in layers:
        w = module.weight
        out, inp, kernel = w.shape[0], w.shape[1], tuple(w.shape[2:])
        key = kohya_key(prefix, name)
        down = torch.randn((rank, inp) + kernel, generator=gen) / math.sqrt(inp * max(1, math.prod(kernel)))
        up = torch.randn((out, rank) + ((1, 1) if kernel else ()), generator=gen) * 0.1 / math.sqrt(rank)
        tensors[f"{key}.lora_down.weight"] = down.to(dtype)
        tensors[f"{key}.lora_up.weight"] = up.to(dtype)
        tensors[f"{key}.alpha"] = torch.tensor(float(rank))
    version = "sdxl_base_v1-0" if len(encoders) == 2 else "sd_v1"
    return save_kohya(path, tensors, {"ss_network_module": "networks.lora", "ss_base_model_version": version})


# ---------------------------------------------------------------- measurements (one process each)


def measure_load(path: str, device: str = "cpu", dtype: str = "fp16") -> dict:
    import diffusers  # noqa: F401  (imports are not the model's cost)

    from app.core.configs import ModelSpec
    from app.engine.models import load_model

    base = rss_now()
    start = time.perf_counter()
    loaded = load_model(ModelSpec(base=path, device=device, dtype=dtype))
    seconds = time.perf_counter() - start
    return {"load_s": seconds, "rss_added_gb": (rss_now() - base) / 1e9, "family": loaded.family.value}


def measure_patching(
    path: str, work: str, counts=(1, 3, 8), device: str = "cpu", dtype: str = "fp16", rank: int = 32, convs: bool = True
) -> dict:
    """Patch 1/3/8 LoRAs (fresh mixer each), one slider move, RSS of the patched vs the bare model."""
    import torch

    from app.core.configs import AdapterEntry, ModelSpec
    from app.engine.models import load_model
    from app.engine.patching import AdapterMixer

    loaded = load_model(ModelSpec(base=path, device=device, dtype=dtype))
    pipe = loaded.pipe
    for comp in ("unet", "vae", "text_encoder", "text_encoder_2"):  # make every weight resident
        m = getattr(pipe, comp, None)
        for p in m.parameters() if m is not None else ():
            p.data.add_(0)
    bare, bare_parts = rss_now(), rss_parts()
    files = [
        write_lora(pipe, Path(work) / f"lora{i}.safetensors", seed=i, rank=rank, convs=convs)
        for i in range(max(counts))
    ]
    out: dict = {"bare_rss_gb": bare / 1e9, "rank": rank, "convs": convs}
    for n in counts:
        mixer = AdapterMixer(pipe, loaded.family, base=path)
        entries = [AdapterEntry(path=str(f), weight=0.5) for f in files[:n]]
        sync(device)
        start = time.perf_counter()
        report = mixer.set_mix(entries)
        sync(device)
        out[f"patch_{n}_s"] = time.perf_counter() - start
        out[f"layers_{n}"] = report.layers_updated
        if n == max(counts):
            now, parts = rss_now(), rss_parts()
            out[f"rss_patched_{n}_gb"] = now / 1e9
            out[f"rss_ratio_{n}"] = now / bare  # patched / bare, the "+5 %" figure
            for kind in parts:  # anonymous memory is what patching itself holds; file pages are reclaimable
                out[f"{kind.lower()}_bare_gb"] = bare_parts.get(kind, 0) / 1e9
                out[f"{kind.lower()}_patched_{n}_gb"] = parts[kind] / 1e9
            out[f"kept_w0_copies_{n}_gb"] = mixer.kept_bytes() / 1e9
            entries[0] = AdapterEntry(path=str(files[0]), weight=0.9)
            sync(device)
            start = time.perf_counter()
            mixer.set_mix(entries)
            sync(device)
            out["slider_move_s"] = time.perf_counter() - start
        mixer.clear()
        del mixer
    del torch
    return out


def measure_training(
    path: str,
    work: str,
    checkpointing: bool,
    size: int = 512,
    steps: int = 3,
    rank: int = 16,
    device: str = "cpu",
    optimizer: str = "adamw",
) -> dict:
    from PIL import Image

    from app.core.train_config import TrainConfig
    from app.engine.training import Trainer
    from app.engine.training.run import read_log

    data = Path(work) / "data" / "1_sks"
    data.mkdir(parents=True, exist_ok=True)
    for i in range(2):
        Image.new("RGB", (size, size), (200, 60 * i, 30)).save(data / f"{i}.png")
    config = TrainConfig.from_dict(
        {
            "name": "bench",
            "base": path,
            "steps": steps,
            "seed": 0,
            "device": device,
            "gradient_checkpointing": checkpointing,
            "output_dir": str(Path(work) / "runs"),
            "cache_dir": str(Path(work) / "cache"),
            "datasets": [{"path": str(data.parent)}],
            "data": {"resolution": size, "min_bucket": size, "max_bucket": size, "min_image_side": 32, "batch_size": 1},
            "network": {"rank": rank, "alpha": float(rank), "targets": "attention_ff"},
            "optimizer": {"kind": optimizer, "schedule": "constant"},
            "output": {"save_every": 0},
            "sample": {"every": 0, "prompts": []},
        },
        where="bench",
    )
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    result = Trainer(config).run()
    times = [r["time"] for r in read_log(result.run_dir / "log.jsonl")]
    per_step = [b - a for a, b in zip(times, times[1:])]
    out = {"step_s": min(per_step) if per_step else float("nan"), "peak_rss_gb": peak_rss() / 1e9}
    if torch.cuda.is_available():
        out["peak_vram_gb"] = torch.cuda.max_memory_allocated() / 1e9
    return out


def measure_bare_step(path: str, size: int = 512, device: str = "cpu", dtype: str = "fp32") -> dict:
    """A bare forward/backward of the frozen UNet (no LoRA, no optimizer): the floor a step can reach."""
    import torch

    from app.core.configs import ModelSpec
    from app.engine.models import load_model

    pipe = load_model(ModelSpec(base=path, device=device, dtype=dtype)).pipe
    unet = pipe.unet
    unet.requires_grad_(False)  # gradients flow through the activations only, as under a LoRA
    g = torch.Generator().manual_seed(0)
    width = unet.config.cross_attention_dim
    lat = torch.randn(1, 4, size // 8, size // 8, generator=g).to(device, unet.dtype)
    text = torch.randn(1, 77, width, generator=g).to(device, unet.dtype)
    kwargs = {}
    if unet.config.addition_embed_type == "text_time":
        pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        kwargs["added_cond_kwargs"] = {
            "text_embeds": torch.randn(1, pooled).to(device, unet.dtype),
            "time_ids": torch.tensor([[size, size, 0, 0, size, size]]).to(device, unet.dtype),
        }
    lat.requires_grad_(True)
    times = []
    for _ in range(2):
        sync(device)
        start = time.perf_counter()
        out = unet(lat, torch.tensor([500], device=device), text, **kwargs).sample
        out.float().pow(2).mean().backward()
        sync(device)
        times.append(time.perf_counter() - start)
    return {"step_s": min(times), "peak_rss_gb": peak_rss() / 1e9}


MEASURES = {
    "load": measure_load,
    "patching": measure_patching,
    "training": measure_training,
    "bare_step": measure_bare_step,
}


def in_child(name: str, module: str = "real_size", **kwargs) -> dict:
    """Run ``<module>.MEASURES[name](**kwargs)`` in a fresh process; its JSON result (or the error)."""
    code = (
        f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import {module} as m; "
        f"print('RESULT ' + json.dumps(m.MEASURES[{name!r}](**json.loads(sys.argv[1]))))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(kwargs)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, TOKENIZERS_PARALLELISM="false"),
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{name} failed: {proc.stderr.strip()[-1500:]}")
    return json.loads(lines[-1][7:])


def ensure_skeleton(work: Path, family: str) -> Path:
    from app.engine.skeleton import write_skeleton

    target = work / f"{family}.safetensors"
    if not target.is_file():
        write_skeleton(work, family, single_file=True)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--train-steps", type=int, default=3)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="loraloom-real-size-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    started = time.perf_counter()

    def record(key: str, value) -> None:
        """Keep each figure as it comes (and on disk), so a cut-short run still reports."""
        results[key] = value
        print(f"{time.perf_counter() - started:7.0f} s  {key}: {json.dumps(value)}", file=sys.stderr, flush=True)
        if args.out:
            args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")

    try:
        t = time.perf_counter()
        sd15, sdxl = ensure_skeleton(work, "sd15"), ensure_skeleton(work, "sdxl")
        record("write_skeletons_s", time.perf_counter() - t)
        record("load_sd15", in_child("load", path=str(sd15)))
        record("load_sdxl", in_child("load", path=str(sdxl)))
        record("bare_step_sd15_512", in_child("bare_step", path=str(sd15)))
        for gc in (False, True):
            record(
                f"train_sd15_512_gc_{'on' if gc else 'off'}",
                in_child(
                    "training", path=str(sd15), work=str(work / f"train-{gc}"), checkpointing=gc, steps=args.train_steps
                ),
            )
        record("patching_sdxl", in_child("patching", path=str(sdxl), work=str(work)))
        bare = results["bare_step_sd15_512"]["step_s"]
        for gc in ("off", "on"):
            r = results[f"train_sd15_512_gc_{gc}"]
            r["step_vs_bare_fwd_bwd"] = r["step_s"] / bare
    finally:
        results["total_s"] = time.perf_counter() - started
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
