"""``bench/mixing.py --family flux1`` (or ``chroma``, Flux-derived): mixing LoRAs by patching vs
diffusers' unfused path.

On a Flux-shaped transformer of moderate width (the family's real block kinds, 4 double + 8 single
blocks, 256 wide; saved to a diffusers folder and loaded back, as a user's model is) with
random rank-16 LoRAs on every attention and MLP layer of every block:

1. per-step time (one transformer call, 256x256, batch 1, distilled guidance as an input)
   (Chroma: no guidance input, it is real CFG in the render) with 0, 1, 3 and 8 adapters through our patching (``AdapterMixer``) and through
   diffusers' ``load_lora_weights`` + ``set_adapters`` (peft layers, unfused), each as a
   ratio to the bare model;
2. the time from a weight change to the new picture (patch + a full render) beside a bare
   render;
3. memory: what the patched model holds beyond the bare one (W0 copies kept by the patcher +
   adapter factors held in memory), with 8 adapters, against the bare model's weights; on a
   GPU also the peak allocated during a render, bare and patched. diffusers' unfused layers
   are listed beside it.

The timing rules are those of ``bench/mixing.py`` (CPU time of this process by default).
"""

from __future__ import annotations

import math
import statistics
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

SIZE = 256
WEIGHTS = [0.8, -0.5, 0.6, 0.4, -0.3, 0.7, 0.2, -0.6]


def transformer_config(family: str = "flux1") -> dict:
    shared = dict(
        patch_size=1,
        in_channels=64,
        num_layers=4,
        num_single_layers=8,
        attention_head_dim=32,
        num_attention_heads=8,
        joint_attention_dim=32,  # the tiny T5's width
        axes_dims_rope=(4, 14, 14),
    )
    if family == "chroma":  # the modulation approximator instead of pooled CLIP and guidance inputs
        return shared | dict(approximator_num_channels=64, approximator_hidden_dim=256, approximator_layers=5)
    return shared | dict(pooled_projection_dim=32, guidance_embeds=True)  # the tiny CLIP's width


def build_pipeline(folder: Path, device: str, family: str = "flux1"):
    """The family's tiny pipeline with its transformer swapped for the moderate one, saved to
    ``folder`` and loaded back from it (so W0 can be read back from its files)."""
    from app.engine.families import engine
    from app.engine.tiny import load_tiny_pipeline

    if not (folder / "model_index.json").exists():
        pipe = engine(family).build_tiny(seed=0)
        torch.manual_seed(0)
        pipe.transformer = type(pipe.transformer)(**transformer_config(family)).eval()
        pipe.save_pretrained(folder)
    pipe = load_tiny_pipeline(folder)
    pipe.to(device)
    return pipe


def write_adapter(pipe, path: Path, seed: int, rank: int = 16, family: str = "flux1") -> Path:
    """A diffusers/ai-toolkit-layout LoRA (``transformer.<path>.lora_A/B``) on every block's
    attention and MLP layers: the layout both loaders read at any width."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    tensors = {}
    for p, m in pipe.transformer.named_modules():
        if not isinstance(m, nn.Linear) or not p.startswith(("transformer_blocks.", "single_transformer_blocks.")):
            continue
        if ".norm" in p:
            continue  # modulation layers: most trainers leave them out
        out, inp = m.weight.shape
        tensors[f"transformer.{p}.lora_A.weight"] = torch.randn(rank, inp, generator=gen) / math.sqrt(inp)
        tensors[f"transformer.{p}.lora_B.weight"] = torch.randn(out, rank, generator=gen) * 0.3 / math.sqrt(rank)
    from app.core.families import spec

    save_file(tensors, str(path), metadata={"ss_base_model_version": spec(family).base_version})
    return path


def _inputs(pipe, device):
    gen = torch.Generator().manual_seed(0)
    cfg = pipe.transformer.config
    seq = (SIZE // 16) ** 2  # 8x VAE, 2x2 packing
    text = 64
    inputs = {
        "hidden_states": torch.randn(1, seq, cfg.in_channels, generator=gen).to(device),
        "encoder_hidden_states": torch.randn(1, text, cfg.joint_attention_dim, generator=gen).to(device),
        "timestep": torch.tensor([0.5], device=device),
        "img_ids": torch.zeros(seq, 3, device=device),
        "txt_ids": torch.zeros(text, 3, device=device),
    }
    if "pooled_projection_dim" in cfg:  # Flux.1's pooled CLIP and distilled guidance inputs
        inputs["pooled_projections"] = torch.randn(1, cfg.pooled_projection_dim, generator=gen).to(device)
        inputs["guidance"] = torch.tensor([3.5], device=device)
    return inputs


def step_time(pipe, repeats: int, clock, sync) -> float:
    inputs = _inputs(pipe, pipe.transformer.device)
    times = []
    with torch.inference_mode():
        pipe.transformer(**inputs)  # warm-up
        for _ in range(repeats):
            sync()
            start = clock()
            pipe.transformer(**inputs)
            sync()
            times.append(clock() - start)
    return min(times)


def render(pipe, steps: int, clock, sync) -> float:
    """A render with the family's own call (Flux: distilled guidance 3.5; Chroma: real CFG 5.0)."""
    from app.core.families import by_pipeline_class, spec
    from app.engine.families import engine

    family = by_pipeline_class(type(pipe).__name__)[0]
    sync()
    start = clock()
    with torch.inference_mode():
        pipe(
            prompt="a red square",
            num_inference_steps=steps,
            guidance_scale=spec(family).default_guidance,
            width=SIZE,
            height=SIZE,
            generator=torch.Generator("cpu").manual_seed(3),
            output_type="latent",
            **engine(family).call_kwargs(pipe, ""),
        )
    sync()
    return clock() - start


def held_bytes(mixer) -> int:
    """What the patcher holds beyond the model: kept W0 copies + adapter factors in memory."""
    factors = 0
    for parsed in mixer.held:
        for delta in parsed.layers.values():
            tensors = delta.tensors
            if isinstance(tensors, dict):  # LazyFactors read from the file: nothing held
                factors += sum(t.numel() * t.element_size() for t in tensors.values())
    return mixer.kept_bytes() + factors


def model_bytes(module: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in module.state_dict().values())


def peak_render(pipe, steps: int, device: str, sync) -> int | None:
    if torch.device(device).type != "cuda":
        return None
    torch.cuda.reset_peak_memory_stats()
    render(pipe, steps, lambda: 0.0, sync)
    return torch.cuda.max_memory_allocated()


def run(args, clock, sync) -> int:
    from app.core.configs import AdapterEntry
    from app.core.families import Family, label
    from app.engine.patching import AdapterMixer
    from app.engine.tiny import quiet_libraries

    quiet_libraries()
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # "no LoRA keys for the text encoder": these files have none
    warnings.filterwarnings("ignore", message="Already found a `peft_config`")  # 8 adapters in one model
    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / f"{args.family}-moderate"
        ours = build_pipeline(folder, args.device, args.family)
        params = sum(p.numel() for p in ours.transformer.parameters()) / 1e6
        files = [write_adapter(ours, Path(tmp) / f"a{i}.safetensors", seed=i, family=args.family) for i in range(8)]
        names = [f"a{i}" for i in range(8)]
        mixer = AdapterMixer(ours, Family(args.family), base=folder)
        theirs = build_pipeline(folder, args.device, args.family)
        for name, f in zip(names, files):
            theirs.load_lora_weights(str(f), adapter_name=name)

        def ours_with(n):
            return lambda: mixer.set_mix([AdapterEntry(str(f), w) for f, w in zip(files[:n], WEIGHTS)])

        def theirs_with(n):
            return lambda: theirs.set_adapters(names[:n], adapter_weights=WEIGHTS[:n])

        cases = {"base": (ours, ours_with(0))}
        for n in (1, 3, 8):
            cases[f"ours {n}"] = (ours, ours_with(n))
        for n in (1, 3, 8):
            cases[f"diffusers {n}"] = (theirs, theirs_with(n))
        steps: dict[str, list[float]] = {k: [] for k in cases}
        for _ in range(args.repeats):
            for name, (pipe, prepare) in cases.items():
                prepare()
                steps[name].append(step_time(pipe, 3, clock, sync))
        per_step = {k: statistics.median(v) for k, v in steps.items()}

        mixer.set_mix([])
        bare_peak = peak_render(ours, args.steps, args.device, sync)
        stack = [AdapterEntry(str(f), w) for f, w in zip(files, WEIGHTS)]
        mixer.set_mix(stack)
        extra = held_bytes(mixer)
        patched_peak = peak_render(ours, args.steps, args.device, sync)
        parts = (ours.transformer, ours.text_encoder, getattr(ours, "text_encoder_2", None))
        bare_model = sum(model_bytes(m) for m in parts if m is not None)
        peft_bytes = sum(p.numel() * p.element_size() for n, p in theirs.transformer.named_parameters() if "lora_" in n)

        bare, change, patch = [], [], []
        for k in range(max(3, args.repeats // 2)):
            mixer.set_mix([])
            bare.append(render(ours, args.steps, clock, sync))
            mixer.set_mix(stack[:3])
            stack[0].weight = 0.8 + 0.1 * (k + 1)
            sync()
            start = clock()
            mixer.set_mix(stack[:3])
            patch.append(clock() - start)
            render(ours, args.steps, clock, sync)
            change.append(clock() - start)
        mixer.clear()

    base = per_step["base"]
    print(
        f"model: {label(args.family)}-shaped transformer (4 double + 8 single blocks, 256 wide), {params:.1f} M parameters, "
        f"{SIZE}x{SIZE}, device {args.device}, {torch.get_num_threads()} threads, {args.clock_name} clock; "
        "adapters: rank 16 on every block's attention and MLP layers"
    )
    print()
    print(f"per-step time (one transformer call): median over {args.repeats} interleaved rounds of the fastest of 3")
    for name, value in per_step.items():
        print(f"  {name:<14} {value * 1000:8.1f} ms   {value / base:5.2f}x base")
    print()
    bare_s, change_s = statistics.median(bare), statistics.median(change)
    print(
        f"{args.steps}-step render, median: bare {bare_s:.3f} s; weight change with 3 adapters "
        f"(patch {statistics.median(patch) * 1000:.1f} ms + render) {change_s:.3f} s"
    )
    print()
    print(
        f"memory with 8 adapters: bare model {bare_model / 2**20:.1f} MiB; the patcher holds "
        f"{extra / 2**20:.2f} MiB more (+{100 * extra / bare_model:.2f} %; W0 copies kept "
        f"{mixer.kept_bytes() / 2**20:.2f} MiB); diffusers' unfused LoRA layers {peft_bytes / 2**20:.1f} MiB "
        f"(+{100 * peft_bytes / bare_model:.1f} %)"
    )
    if bare_peak is not None and patched_peak is not None:
        print(
            f"  peak allocated during a render: bare {bare_peak / 2**20:.1f} MiB, patched "
            f"{patched_peak / 2**20:.1f} MiB ({patched_peak / bare_peak:.3f}x)"
        )
    print()
    print("ratios")
    for n in (1, 3, 8):
        print(
            f"  per step, {n} adapter{'s' if n > 1 else ' '}: ours / base {per_step[f'ours {n}'] / base:.2f}, "
            f"diffusers unfused / base {per_step[f'diffusers {n}'] / base:.2f}, "
            f"diffusers / ours {per_step[f'diffusers {n}'] / per_step[f'ours {n}']:.2f}"
        )
    print(f"  weight change to new picture / bare render: {change_s / bare_s:.2f}")
    print(f"  patched memory / bare, 8 adapters: {(bare_model + extra) / bare_model:.4f} (target <= 1.05)")
    return 0
