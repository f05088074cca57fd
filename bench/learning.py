"""How fast our trainer learns, beside a loop written the way diffusers'
``examples/text_to_image/train_text_to_image_lora.py`` trains (same data, steps, rank, alpha,
learning rate, batch, optimizer and clipping), on the pre-trained tiny SD1 fixture.

Data: four 64 px solid-red pictures captioned with the trigger "sks" (the learning test's
data). For each seed and each variant (ours with every ``[network] init``, and the reference):

  eval loss    plain MSE of the noise prediction on the training latents at fixed noise and
               timesteps (999, 900, 750, 500, 250, 100), caption "sks"; "reduction" is the
               share it fell from step 0 (the base model's loss, the same for every variant).
  effect       redness (mean red minus mean green/blue, 0..1 pixels) of renders of "sks" with
               the adapter minus without it.
  leakage      the same change on prompts without the trigger ("blue", "a green background"):
               what the adapter does where it should not.
  s/step       mean CPU seconds (process time, one torch thread: steady on a shared machine)
               per optimizer step after the first (ours: between its progress events; the
               reference: its loop, which encodes pictures and captions at every step, as the
               example does).

Printed per seed, then the mean, and the ratios ours / reference. Goals (issue 18): reduction
>= the reference's, effect >=, leakage <=, step time <= 0.75x.

    .venv/bin/python bench/learning.py [--steps 100] [--seeds 3] [--lr 1e-4] [--inits gaussian,kaiming,pissa,olora]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

TRIGGER = "sks"
RED = (220, 30, 30)
SIZE = 64
EVAL_TIMESTEPS = (999, 900, 750, 500, 250, 100)
OTHER_PROMPTS = ("blue", "a green background")
RENDER_SEEDS = (0, 1, 2)


def write_data(folder: Path, pictures: int = 4) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(pictures):
        Image.new("RGB", (SIZE, SIZE), RED).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(TRIGGER, encoding="utf-8")
    return folder


# ---------------------------------------------------------------- measures (shared by both)


def redness(image) -> float:
    return float(image[..., 0].mean() - image[..., 1:].mean())


def render_redness(pipe, prompt: str) -> float:
    import torch

    values = []
    for seed in RENDER_SEEDS:
        image = pipe(
            prompt,
            num_inference_steps=8,
            guidance_scale=5.0,
            width=SIZE,
            height=SIZE,
            generator=torch.Generator().manual_seed(seed),
            output_type="np",
        ).images[0]
        values.append(redness(image))
    return statistics.mean(values)


def encode_prompt(pipe, prompt: str):
    tok = pipe.tokenizer
    ids = tok([prompt], max_length=tok.model_max_length, padding="max_length", truncation=True, return_tensors="pt")
    return pipe.text_encoder(ids.input_ids, return_dict=False)[0]


def eval_loss(pipe, data: Path) -> float:
    """MSE of the noise prediction on every training picture at fixed noise and timesteps."""
    import numpy as np
    import torch
    from diffusers import DDPMScheduler
    from PIL import Image

    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    gen = torch.Generator().manual_seed(0)
    unet, vae = pipe.unet, pipe.vae
    was_training = unet.training
    unet.eval()
    total = []
    with torch.no_grad():
        embeds = encode_prompt(pipe, TRIGGER)
        for path in sorted(data.glob("*.png")):
            pixels = torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 127.5 - 1)
            latent = vae.encode(pixels.permute(2, 0, 1)[None]).latent_dist.mean * vae.config.scaling_factor
            latents = latent.repeat(len(EVAL_TIMESTEPS), 1, 1, 1)
            noise = torch.randn(latents.shape, generator=gen)
            t = torch.tensor(EVAL_TIMESTEPS)
            pred = unet(sched.add_noise(latents, noise, t), t, embeds.repeat(len(t), 1, 1), return_dict=False)[0]
            total.append(torch.nn.functional.mse_loss(pred, noise).item())
    unet.train(was_training)
    return statistics.mean(total)


def measure(pipe, data: Path) -> dict:
    """Eval loss and redness of renders with and without the trigger, of the model now in ``pipe``."""
    pipe.unet.eval()
    return {
        "loss": eval_loss(pipe, data),
        "with": render_redness(pipe, TRIGGER),
        "others": [render_redness(pipe, p) for p in OTHER_PROMPTS],
    }


def compare(trained: dict, base: dict) -> dict:
    """The adapter's measures against the untouched base model's (pissa and olora change the
    base weights the adapter sits on, so "adapter off" in the trained model is not the base)."""
    out = dict(trained)
    out["reduction"] = (base["loss"] - trained["loss"]) / base["loss"]
    out["effect"] = trained["with"] - base["with"]
    out["leakage"] = statistics.mean(abs(a - b) for a, b in zip(trained["others"], base["others"]))
    return out


# ---------------------------------------------------------------- the two trainers


def run_ours(model: Path, data: Path, work: Path, args: argparse.Namespace, seed: int, init: str) -> dict:
    from app.core.events import Phase, Progress
    from app.core.train_config import TrainConfig
    from app.engine.training import Trainer

    config = TrainConfig.from_dict(
        {
            "name": f"ours-{init}-{seed}",
            "base": str(model),
            "trigger": TRIGGER,
            "output_dir": str(work / "runs"),
            "cache_dir": str(work / "cache"),
            "seed": seed,
            "steps": args.steps,
            "min_snr_gamma": 0.0,  # the example's default (snr_gamma unset)
            "datasets": [{"path": str(data)}],
            "data": {
                "resolution": SIZE,
                "min_bucket": SIZE,
                "max_bucket": SIZE,
                "min_image_side": 32,
                "batch_size": args.batch,
                "caption_dropout": 0.0,
            },
            "network": {"rank": args.rank, "alpha": float(args.rank), "targets": "attention", "init": init},
            "optimizer": {"learning_rate": args.lr, "schedule": "constant", "weight_decay": 1e-2},
            "output": {"save_every": 0},
            "sample": {"every": 0},
        }
    )
    marks: list[float] = []  # CPU time at the end of each step (its Progress event)

    def on_event(event) -> None:
        if isinstance(event, Progress) and event.phase is Phase.TRAINING:
            marks.append(time.process_time())

    trainer = Trainer(config, on_event=on_event)
    trainer.run()
    out = measure(trainer.session.pipe, data)
    out["step_s"] = (marks[-1] - marks[0]) / (len(marks) - 1)
    return out


def run_reference(model: Path, data: Path, args: argparse.Namespace, seed: int) -> dict:
    """The training loop of diffusers' train_text_to_image_lora.py, written out for this bench."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import DDPMScheduler
    from peft import LoraConfig
    from PIL import Image

    from app.engine.tiny import load_tiny_pipeline

    pipe = load_tiny_pipeline(model)
    unet, vae, text_encoder, tokenizer = pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer
    sched = DDPMScheduler.from_config(pipe.scheduler.config)
    for m in (unet, vae, text_encoder):
        m.requires_grad_(False)
    torch.manual_seed(seed)  # the script seeds before it adds the adapter
    unet.add_adapter(
        LoraConfig(
            r=args.rank,
            lora_alpha=args.rank,
            init_lora_weights="gaussian",
            target_modules=["to_k", "to_q", "to_v", "to_out.0"],
        )
    )
    params = [p for p in unet.parameters() if p.requires_grad]
    for p in params:
        p.data = p.data.float()
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    files = sorted(data.glob("*.png"))
    gen = torch.Generator().manual_seed(seed)
    unet.train()
    order: list[int] = []
    times = []
    for _step in range(args.steps):
        start = time.process_time()
        batch = []
        for _ in range(args.batch):  # a shuffled pass over the pictures per epoch, as its DataLoader
            if not order:
                order = torch.randperm(len(files), generator=gen).tolist()
            batch.append(files[order.pop()])
        pixels = [  # its transforms: resize, centre crop (the pictures are square), to tensor, normalise
            torch.from_numpy(np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 127.5 - 1).permute(2, 0, 1)
            for p in batch
        ]
        captions = [p.with_suffix(".txt").read_text(encoding="utf-8") for p in batch]
        ids = tokenizer(
            captions, max_length=tokenizer.model_max_length, padding="max_length", truncation=True, return_tensors="pt"
        ).input_ids
        with torch.no_grad():
            latents = vae.encode(torch.stack(pixels)).latent_dist.sample(generator=gen) * vae.config.scaling_factor
            embeds = text_encoder(ids, return_dict=False)[0]
        noise = torch.randn(latents.shape, generator=gen)
        timesteps = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), generator=gen)
        pred = unet(sched.add_noise(latents, noise, timesteps), timesteps, embeds, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.process_time() - start)
    out = measure(pipe, data)
    out["step_s"] = statistics.mean(times[1:])
    return out


# ---------------------------------------------------------------- report

COLUMNS = ("reduction", "effect", "leakage", "step_s")


def table(results: dict[str, list[dict]], seeds: list[int]) -> str:
    lines = [f"{'variant':<16}{'seed':>6}  " + "".join(f"{c:>11}" for c in COLUMNS)]
    for name, runs in results.items():
        for seed, run in zip(seeds, runs):
            lines.append(f"{name:<16}{seed:>6}  " + "".join(f"{run[c]:>11.4f}" for c in COLUMNS))
    lines.append("mean")
    means = {n: {c: statistics.mean(r[c] for r in runs) for c in COLUMNS} for n, runs in results.items()}
    for name, mean in means.items():
        lines.append(f"{name:<16}{'':>6}  " + "".join(f"{mean[c]:>11.4f}" for c in COLUMNS))
    ref = means["reference"]
    lines.append("ours / reference (goal: reduction >= 1, effect >= 1, leakage <= 1, s/step <= 0.75)")
    for name, mean in means.items():
        if name != "reference":
            ratios = "".join(f"{mean[c] / ref[c] if ref[c] else float('nan'):>11.3f}" for c in COLUMNS)
            lines.append(f"{name:<16}{'':>6}  " + ratios)
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument(
        "--inits", default="gaussian,kaiming", help="our [network] init values to run (also pissa, olora)"
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny models run fastest on one)")
    parser.add_argument("--json", help="also write the per-seed results here")
    args = parser.parse_args()

    import torch

    from app.engine.tiny import load_tiny_pipeline, pretrained_tiny_path, quiet_libraries

    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = pretrained_tiny_path("sd1")
    seeds = list(range(1, args.seeds + 1))
    results: dict[str, list[dict]] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-learning-") as tmp:
        work = Path(tmp)
        data = write_data(work / "data" / f"1_{TRIGGER}")
        base = measure(load_tiny_pipeline(model), data)
        for seed in seeds:
            results.setdefault("reference", []).append(compare(run_reference(model, data, args, seed), base))
            for init in args.inits.split(","):
                ours = run_ours(model, data, work, args, seed, init)
                results.setdefault(f"ours {init}", []).append(compare(ours, base))
    print(
        f"bench/learning.py: tiny SD1, {args.steps} steps, lr {args.lr:g}, rank {args.rank} (alpha = rank), "
        f"batch {args.batch}, attention layers, seeds {seeds} ({time.perf_counter() - started:.0f} s)"
    )
    print(table(results, seeds))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
