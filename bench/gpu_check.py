"""One prepared check for a GPU machine (no internet needed: it builds the skeletons itself).

In under 8 minutes on a recent GPU it measures, on full-size random-weight skeletons:
- render it/s, fp16 and bf16: SD1.5 at 512², SDXL at 1024², bare and with 3 LoRAs patched;
- the time from a slider move to the new picture;
- LoRA training step time and peak VRAM, SD1.5 (512) and SDXL (1024), rank 16, batch 1,
  gradient checkpointing on and off, AdamW and (if bitsandbytes imports) 8-bit AdamW;
- the same ratios as bench/real_size.py (patched vs bare, step vs bare forward/backward);
- Flux.1 (bench/gpu_check_flux.py): a real-size transformer skeleton built on the GPU, 1024²,
  step it/s bare and with 3 kohya LoRAs, patch time, slider time, peak VRAM.

    python bench/gpu_check.py --out DIR            # on the GPU machine
    python bench/gpu_check.py --smoke --out DIR    # tiny models, CPU, seconds (CI runs this)

Writes DIR/gpu_check.json and prints a one-screen summary. Exits 1 on any failure (the
failing measurement is named). Without a CUDA torch it first tries to install one from the
package index (``--no-install`` to skip); with no index reachable it says so and exits 1.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

CUDA_INDEX = "https://download.pytorch.org/whl/cu128"


def ensure_cuda_torch(install: bool) -> None:
    """A CUDA build of torch, installed from the package index when this one has none."""
    import torch

    if torch.cuda.is_available():
        return
    if not install:
        raise SystemExit("gpu_check: error: torch sees no CUDA GPU (and --no-install was given)")
    print(f"torch {torch.__version__} has no CUDA: installing a CUDA build from {CUDA_INDEX}", flush=True)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--upgrade", "torch", "--index-url", CUDA_INDEX]
    if subprocess.run(cmd).returncode != 0:
        raise SystemExit("gpu_check: error: could not install a CUDA torch (is the package index reachable?)")
    os.execv(sys.executable, [sys.executable] + sys.argv + ["--no-install"])  # restart with the new torch


def render_its(pipe, size: int, steps: int) -> float:
    """Sampling steps per second of one picture (CFG on), after a warm-up render."""
    import torch
    from real_size import sync

    kwargs = dict(prompt="a red square", width=size, height=size, guidance_scale=5.0, output_type="latent")
    with torch.inference_mode():
        pipe(num_inference_steps=1, generator=torch.Generator("cpu").manual_seed(0), **kwargs)
        sync(pipe.unet.device)
        start = time.perf_counter()
        pipe(num_inference_steps=steps, generator=torch.Generator("cpu").manual_seed(1), **kwargs)
        sync(pipe.unet.device)
    return steps / (time.perf_counter() - start)


def check_render(path: str, work: str, size: int, steps: int, device: str, dtype: str) -> dict:
    """Bare and 3-LoRA it/s, and slider move -> new picture (patch + a full render)."""
    import torch
    from real_size import sync, write_lora

    from app.core.configs import AdapterEntry, ModelSpec
    from app.engine.models import load_model
    from app.engine.patching import AdapterMixer

    loaded = load_model(ModelSpec(base=path, device=device, dtype=dtype))
    pipe = loaded.pipe
    out = {"bare_its": render_its(pipe, size, steps)}
    files = [write_lora(pipe, Path(work) / f"r{i}.safetensors", seed=i, rank=16, convs=True) for i in range(3)]
    mixer = AdapterMixer(pipe, loaded.family)
    entries = [AdapterEntry(path=str(f), weight=0.5) for f in files]
    start = time.perf_counter()
    mixer.set_mix(entries)
    sync(device)
    out["patch_3_s"] = time.perf_counter() - start
    out["lora3_its"] = render_its(pipe, size, steps)
    out["lora3_vs_bare"] = out["lora3_its"] / out["bare_its"]
    entries[0] = AdapterEntry(path=str(files[0]), weight=0.9)
    start = time.perf_counter()
    mixer.set_mix(entries)
    with torch.inference_mode():
        pipe(
            prompt="a red square",
            width=size,
            height=size,
            num_inference_steps=steps,
            generator=torch.Generator("cpu").manual_seed(1),
            output_type="latent",
        )
    sync(device)
    out["slider_to_picture_s"] = time.perf_counter() - start
    return out


def _measures() -> dict:
    from gpu_check_flux import check_flux
    from real_size import MEASURES as CPU_MEASURES

    return {**CPU_MEASURES, "render": check_render, "flux": check_flux}


PLANS = {
    # name: (variant or tiny family, picture size, render steps, train size, dtypes)
    "full": {"sd15": ("sd15", 512, 20, 512), "sdxl": ("sdxl", 1024, 20, 1024)},
    "smoke": {"sd15": ("sd1", 64, 2, 64), "sdxl": ("sdxl", 64, 2, 64)},
}


def model_path(work: Path, name: str, smoke: bool) -> str:
    if smoke:
        from app.engine.tiny import write_tiny_model

        target = work / f"tiny-{name}"
        if not target.exists():
            write_tiny_model(target, family=name)
        return str(target)
    from real_size import ensure_skeleton

    return str(ensure_skeleton(work, name))


def run_checks(work: Path, smoke: bool, device: str, dtypes: list[str], optimizers: list[str]) -> dict:
    from real_size import in_child

    results: dict = {"device": device, "smoke": smoke, "dtypes": dtypes, "failures": []}
    for family, (name, size, steps, train_size) in PLANS["smoke" if smoke else "full"].items():
        path = model_path(work, name, smoke)
        block: dict = {}
        results[family] = block

        def attempt(label: str, measure: str, block: dict = block, family: str = family, **kwargs) -> None:
            try:
                if smoke:  # tiny models: one process is enough (a child per measurement costs its imports)
                    block[label] = _measures()[measure](**kwargs)
                else:  # each in a fresh process, so peak memory belongs to that measurement alone
                    block[label] = in_child(measure, "gpu_check" if measure == "render" else "real_size", **kwargs)
            except Exception as exc:  # one failing measurement is reported, the rest still run
                results["failures"].append(f"{family} {label}: {str(exc).strip().splitlines()[-1][:300]}")

        for dtype in dtypes:
            attempt(
                f"render_{dtype}",
                "render",
                path=path,
                work=str(work),
                size=size,
                steps=steps,
                device=device,
                dtype=dtype,
            )
        attempt(
            "bare_step",
            "bare_step",
            path=path,
            size=train_size,
            device=device,
            dtype="fp32" if device == "cpu" else dtypes[0],
        )
        for opt in optimizers:
            for gc in (False, True):
                label = f"train_{opt}_gc_{'on' if gc else 'off'}"
                attempt(
                    label,
                    "training",
                    path=path,
                    work=str(work / f"{family}-{label}"),
                    checkpointing=gc,
                    size=train_size,
                    steps=2 if smoke else 3,
                    rank=16,
                    device=device,
                    optimizer=opt,
                )
                if label in block and "bare_step" in block:
                    block[label]["step_vs_bare_fwd_bwd"] = block[label]["step_s"] / block["bare_step"]["step_s"]
    try:
        kwargs = dict(work=str(work), smoke=smoke, device=device)
        results["flux1"] = _measures()["flux"](**kwargs) if smoke else in_child("flux", "gpu_check", **kwargs)
    except Exception as exc:  # reported like the others; the SD figures stand
        results["failures"].append(f"flux1: {str(exc).strip().splitlines()[-1][:300]}")
    return results


def summary(results: dict) -> str:
    lines = [f"LoRA Loom GPU check on {results['device_name']} ({'smoke' if results['smoke'] else 'full size'})"]
    for family in ("sd15", "sdxl"):
        block = results.get(family, {})
        for key, r in block.items():
            if key.startswith("render_"):
                lines.append(
                    f"  {family} {key[7:]}: {r['bare_its']:.2f} it/s bare, {r['lora3_its']:.2f} with 3 LoRAs "
                    f"(x{r['lora3_vs_bare']:.2f}); slider -> picture {r['slider_to_picture_s']:.2f} s"
                )
            elif key.startswith("train_"):
                vram = f", peak VRAM {r['peak_vram_gb']:.1f} GB" if "peak_vram_gb" in r else ""
                ratio = f" (x{r['step_vs_bare_fwd_bwd']:.2f} bare fwd/bwd)" if "step_vs_bare_fwd_bwd" in r else ""
                lines.append(f"  {family} {key[6:]}: {r['step_s']:.2f} s/step{ratio}{vram}")
    if "flux1" in results:
        from gpu_check_flux import summary_line

        lines.append(summary_line(results["flux1"]))
    for failure in results["failures"]:
        lines.append(f"  FAILED {failure}")
    lines.append(f"  total {results['total_s']:.0f} s")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="LoRA Loom's one-shot GPU check")
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json")
    parser.add_argument("--smoke", action="store_true", help="tiny models on the CPU (checks the script, not the GPU)")
    parser.add_argument("--no-install", action="store_true", help="never pip-install a CUDA torch")
    parser.add_argument("--work", type=Path, default=None, help="where skeletons go (default: a temp folder)")
    args = parser.parse_args()
    started = time.perf_counter()
    try:
        if not args.smoke:
            ensure_cuda_torch(install=not args.no_install)
        import torch

        device = "cpu" if args.smoke else "cuda"
        dtypes = ["fp32"] if args.smoke else ["fp16"] + (["bf16"] if torch.cuda.is_bf16_supported() else [])
        optimizers = ["adamw"]
        try:
            import bitsandbytes  # noqa: F401

            optimizers.append("adamw8bit")
        except Exception:  # absent or broken: the 8-bit figures are left out and said so
            pass
        work = args.work or Path(tempfile.mkdtemp(prefix="loraloom-gpu-check-"))
        work.mkdir(parents=True, exist_ok=True)
        try:
            results = run_checks(work, args.smoke, device, dtypes, optimizers)
        finally:
            if args.work is None:  # gigabytes of skeletons: never left behind in /tmp
                shutil.rmtree(work, ignore_errors=True)
        results["device_name"] = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
        results["torch"] = torch.__version__
        if "adamw8bit" not in optimizers:
            results["notes"] = ["bitsandbytes does not import: no 8-bit AdamW figures"]
    except SystemExit:
        raise
    except Exception:
        print("gpu_check: error: " + traceback.format_exc().strip().splitlines()[-1], file=sys.stderr)
        return 1
    results["total_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(summary(results))
    return 1 if results["failures"] else 0


def __getattr__(name: str):  # ``MEASURES`` for real_size.in_child, built on first use
    if name == "MEASURES":
        return _measures()
    raise AttributeError(name)


if __name__ == "__main__":
    sys.exit(main())
