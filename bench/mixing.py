"""Mixing adapters by patching weights vs diffusers' unfused multi-adapter path.

On a small SD-shaped model (the real SD 1.x UNet layout at reduced width, 16x16 latents)
with random rank-16 kohya LoRAs on every attention projection and the text encoder:

1. per-step time (one UNet call with classifier-free guidance, batch 2) with 0, 1 and 3
   adapters through our patching (``AdapterMixer``) and through diffusers'
   ``load_lora_weights`` + ``set_adapters`` (peft layers, unfused), each as a ratio to
   the bare base model;
2. the time from a weight change to the new picture (patch + a full render) beside a
   bare render of the base model with the same settings;
3. the same for a block-weight change (one adapter's MID block factor moved, so only the
   layers of that block are re-patched): target at most 1.10x a bare render.

    .venv/bin/python bench/mixing.py [--steps 8] [--repeats 5] [--device cpu] [--threads 1] [--clock cpu]
    .venv/bin/python bench/mixing.py --family flux1 …   # a Flux-shaped transformer (bench/mixing_flux.py)
    .venv/bin/python bench/mixing.py --family chroma …  # Chroma's (Flux-derived; the same file)

Numbers depend on the machine; the ratios are the point. On a CPU shared with other
work, wall time swings by several times between identical calls, so by default the CPU
time of this process is measured (``--clock cpu``, one torch thread): it counts the work
done, not the waiting. ``--clock wall`` measures what a user waits on an idle machine.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch import nn  # noqa: E402


def build_pipeline(device: str):
    """The tiny pipeline with its UNet swapped for an SD-1.x-shaped one of moderate width."""
    from diffusers import UNet2DConditionModel

    from app.engine.tiny import build_tiny_pipeline

    pipe = build_tiny_pipeline("sd1", seed=0)
    torch.manual_seed(0)
    pipe.unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(32, 64, 128, 128),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        attention_head_dim=8,
        cross_attention_dim=pipe.text_encoder.config.hidden_size,
        norm_num_groups=32,
    ).eval()
    pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def write_adapter(pipe, path: Path, seed: int, rank: int = 16) -> Path:
    from app.engine.lora_files import TE, UNET, kohya_key, save_kohya, te_module_path

    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    layers = [
        (UNET, p, m)
        for p, m in pipe.unet.named_modules()
        if isinstance(m, nn.Linear) and p.endswith(("to_q", "to_k", "to_v", "to_out.0"))
    ]
    layers += [
        (TE, te_module_path(p), m)
        for p, m in pipe.text_encoder.named_modules()
        if isinstance(m, nn.Linear) and p.endswith(("q_proj", "k_proj", "v_proj", "out_proj"))
    ]
    for prefix, path_, module in layers:
        out, inp = module.weight.shape
        name = kohya_key(prefix, path_)
        tensors[f"{name}.lora_down.weight"] = torch.randn(rank, inp, generator=gen) / math.sqrt(inp)
        tensors[f"{name}.lora_up.weight"] = torch.randn(out, rank, generator=gen) * 0.3 / math.sqrt(rank)
        tensors[f"{name}.alpha"] = torch.tensor(float(rank))
    save_kohya(path, tensors, {"ss_network_module": "networks.lora", "ss_base_model_version": "sd_v1"})
    return path


def step_time(pipe, repeats: int) -> float:
    """Fastest of ``repeats`` timed UNet calls (batch 2: guidance on): the least disturbed by other load."""
    device = pipe.unet.device
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0)).to(device)
    text = torch.randn(2, 77, pipe.text_encoder.config.hidden_size, generator=torch.Generator().manual_seed(1)).to(
        device
    )
    t = torch.tensor([500] * 2, device=device)
    times = []
    with torch.inference_mode():
        pipe.unet(latents, t, encoder_hidden_states=text)  # warm-up
        for _ in range(repeats):
            sync(device)
            start = CLOCK()
            pipe.unet(latents, t, encoder_hidden_states=text)
            sync(device)
            times.append(CLOCK() - start)
    return min(times)


CLOCK = time.perf_counter


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def render(pipe, steps: int) -> float:
    sync(pipe.unet.device)
    start = CLOCK()
    with torch.inference_mode():
        pipe(
            prompt="a red square",
            num_inference_steps=steps,
            guidance_scale=5.0,
            width=128,
            height=128,
            generator=torch.Generator("cpu").manual_seed(3),
            output_type="latent",
        )
    sync(pipe.unet.device)
    return CLOCK() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="sampling steps per render")
    parser.add_argument("--repeats", type=int, default=5, help="timing rounds (cases interleaved in each round)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--family", choices=["sd1", "flux1", "chroma"], default="sd1", help="model shape (default sd1)")
    parser.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default=None,
        help="cpu: this process's CPU time (default on CPU); wall: elapsed time (default on GPU)",
    )
    args = parser.parse_args()
    global CLOCK
    clock = args.clock or ("cpu" if args.device == "cpu" else "wall")
    CLOCK = time.process_time if clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    if args.family in ("flux1", "chroma"):  # Flux-shaped transformers
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import mixing_flux

        args.clock_name = clock
        return mixing_flux.run(args, CLOCK, lambda: sync(args.device))

    from app.core import block_weights
    from app.core.configs import AdapterEntry
    from app.core.families import Family
    from app.engine.patching import AdapterMixer
    from app.engine.tiny import quiet_libraries

    quiet_libraries()
    torch.set_grad_enabled(False)
    ours = build_pipeline(args.device)
    params = sum(p.numel() for p in ours.unet.parameters()) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        files = [write_adapter(ours, Path(tmp) / f"a{i}.safetensors", seed=i) for i in range(3)]
        weights = [0.8, -0.5, 0.6]
        names = [f"a{i}" for i in range(3)]
        mixer = AdapterMixer(ours, Family.SD1)
        theirs = build_pipeline(args.device)
        theirs.unet.load_state_dict(ours.unet.state_dict())
        for name, f in zip(names, files):
            theirs.load_lora_weights(str(f), adapter_name=name)

        def ours_with(n):
            return lambda: mixer.set_mix([AdapterEntry(str(f), w) for f, w in zip(files[:n], weights)])

        def theirs_with(active):
            return lambda: theirs.set_adapters(
                names, adapter_weights=[w if i < active else 0.0 for i, w in enumerate(weights)]
            )

        # Every case once per round, rounds repeated: drift in machine load hits all cases alike.
        cases = {
            "base": (ours, ours_with(0)),
            "ours 1": (ours, ours_with(1)),
            "ours 3": (ours, ours_with(3)),
            "diffusers 1": (theirs, theirs_with(1)),
            "diffusers 3": (theirs, theirs_with(3)),
            "diffusers 3 loaded, 1 active": (theirs, theirs_with(1)),
        }
        theirs_only_one = build_pipeline(args.device)
        theirs_only_one.unet.load_state_dict(ours.unet.state_dict())
        theirs_only_one.load_lora_weights(str(files[0]), adapter_name="a0")
        theirs_only_one.set_adapters(["a0"], adapter_weights=[weights[0]])
        cases["diffusers 1"] = (theirs_only_one, lambda: None)
        steps: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.repeats):
            for name, (pipe, prepare) in cases.items():
                prepare()
                steps[name].append(step_time(pipe, 3))
        per_step = {k: statistics.median(v) for k, v in steps.items()}

        # Weight change -> new picture, interleaved with bare renders and diffusers' unfused renders.
        stack = [AdapterEntry(str(f), w) for f, w in zip(files, weights)]
        bare, change, patch, unfused, block, block_patch = [], [], [], [], [], []
        mid_only = block_weights.FORMS[26]
        for k in range(max(3, args.repeats // 2)):
            mixer.set_mix([])
            bare.append(render(ours, args.steps))
            mixer.set_mix(stack)
            stack[0].weight = 0.8 + 0.1 * (k + 1)
            sync(args.device)
            start = CLOCK()
            mixer.set_mix(stack)
            patch.append(CLOCK() - start)
            render(ours, args.steps)
            change.append(CLOCK() - start)
            theirs.set_adapters(names, adapter_weights=[stack[0].weight] + weights[1:])
            unfused.append(render(theirs, args.steps))
            # Block-weight change: adapter 0's MID factor moves, every other block stays at 1.
            stack[0].lbw = block_weights.format_vector([0.5 + 0.1 * k if b == "MID" else 1.0 for b in mid_only])
            sync(args.device)
            start = CLOCK()
            report = mixer.set_mix(stack)
            block_patch.append((CLOCK() - start, report.layers_updated))
            render(ours, args.steps)
            block.append(CLOCK() - start)
            stack[0].lbw = ""
        mixer.clear()
        bare_s, change_s, unfused_s, block_s = (statistics.median(x) for x in (bare, change, unfused, block))

    base = per_step["base"]
    print(
        f"model: SD-1.x-shaped UNet, {params:.1f} M parameters, 128x128, device {args.device}, "
        f"{torch.get_num_threads()} threads, {clock} clock; adapters: rank 16 on every attention projection "
        "+ text encoder"
    )
    print()
    print(
        f"per-step time (one UNet call, guidance batch 2): median over {args.repeats} interleaved rounds "
        "of the fastest of 3 calls"
    )
    for name, value in per_step.items():
        print(f"  {name:<30} {value * 1000:8.1f} ms   {value / base:5.2f}x base")
    print()
    print(
        f"{args.steps}-step render, median: bare base {bare_s:.3f} s; weight change with 3 adapters "
        f"(patch {statistics.median(patch) * 1000:.1f} ms + render) {change_s:.3f} s; "
        f"diffusers unfused, 3 adapters {unfused_s:.3f} s"
    )
    print(
        f"{args.steps}-step render after a block-weight change (MID of one adapter; patch "
        f"{statistics.median(t for t, _ in block_patch) * 1000:.1f} ms, {block_patch[0][1]} layers re-patched): "
        f"{block_s:.3f} s"
    )
    print()
    print("ratios")
    print(
        f"  per step, 3 adapters: ours / base {per_step['ours 3'] / base:.2f}, "
        f"diffusers unfused / base {per_step['diffusers 3'] / base:.2f}, "
        f"diffusers / ours {per_step['diffusers 3'] / per_step['ours 3']:.2f}"
    )
    print(
        f"  per step, 1 adapter:  ours / base {per_step['ours 1'] / base:.2f}, "
        f"diffusers unfused / base {per_step['diffusers 1'] / base:.2f}"
    )
    print(
        f"  weight change to new picture / bare render: {change_s / bare_s:.2f} "
        f"(diffusers unfused render / bare render: {unfused_s / bare_s:.2f})"
    )
    print(f"  block-weight change to new picture / bare render: {block_s / bare_s:.2f} (target <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
