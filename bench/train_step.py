"""Training step time: our loop beside its limit and beside a diffusers-example-style loop.

On a small SD1-shaped model (wider than the tiny test model, so the UNet's maths
dominates; VAE and text encoder keep roughly SD's proportions to the UNet) and a few
128 px pictures, each variant runs in its own process and reports its median step time
and peak RSS:

  ours       LoRA Loom's Trainer: latents and text embeddings cached once, then each
             step is the UNet forward+backward (cache filling is timed separately).
  bare       the limit: the same UNet + the same peft LoRA on fixed tensors, just
             forward, MSE, backward, AdamW step.
  reference  written the way diffusers' train_text_to_image_lora.py works: every step
             loads and transforms the pictures, runs the VAE encoder and the text
             encoder, then the UNet forward+backward.

``--family flux1`` does the same on a Flux-shaped transformer (double- and single-stream
blocks at 4 heads x 32, T5- and CLIP-shaped encoders, the 16-channel VAE); its reference is
written like diffusers' train_dreambooth_lora_flux.py (per step: pictures, VAE, both text
encoders, latent packing, sigmas from the scheduler's timesteps, guidance input).

    .venv/bin/python bench/train_step.py [--family sd1|flux1] [--steps 12] [--batch 2] [--threads 1] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
SIZE = 128
RANK = 16


def build_model(folder: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from app.engine import tiny, tiny_text

    tiny_text.quiet_libraries()
    torch.manual_seed(0)
    unet_cfg = tiny.unet_config("sd1")
    unet_cfg.update(
        sample_size=SIZE // 8,
        block_out_channels=(64, 128, 256),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        attention_head_dim=8,
        cross_attention_dim=256,
    )
    vae_cfg = tiny.vae_config()
    vae_cfg.update(block_out_channels=(32, 64, 128, 128), norm_num_groups=32, sample_size=SIZE)
    with tempfile.TemporaryDirectory() as tok_dir:
        vocab = tiny_text.write_tokenizer(Path(tok_dir))
        tokenizer = CLIPTokenizer.from_pretrained(tok_dir)
    text = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=256,
            intermediate_size=1024,
            num_hidden_layers=4,
            num_attention_heads=4,
            max_position_embeddings=77,
            bos_token_id=vocab[tiny_text.BOS],
            eos_token_id=vocab[tiny_text.EOS],
            pad_token_id=vocab[tiny_text.EOS],
        )
    )
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL(**vae_cfg),
        text_encoder=text,
        tokenizer=tokenizer,
        unet=UNet2DConditionModel(**unet_cfg),
        scheduler=EulerDiscreteScheduler(**tiny.scheduler_config()),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    tiny.save_pipeline(pipe, folder, "sd1", info={"bench": "train_step"})


def build_flux_model(folder: Path) -> None:
    """The tiny Flux's components at moderate widths: transformer 128 wide (4 heads x 32),
    2 double + 4 single blocks, T5 and CLIP 128 wide, the 16-channel VAE."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from app.engine import tiny, tiny_text
    from app.engine.families import engine

    flux = engine("flux1")
    pipe = flux.build_tiny(0)
    torch.manual_seed(0)
    config = flux.tiny_transformer_config()
    config.update(num_layers=2, num_single_layers=4, attention_head_dim=32, num_attention_heads=4)
    config.update(joint_attention_dim=128, pooled_projection_dim=128, axes_dims_rope=(8, 12, 12))
    pipe.transformer = FluxTransformer2DModel(**config)
    vae_cfg = flux.tiny_vae_config()
    vae_cfg.update(block_out_channels=(32, 64, 64, 64), norm_num_groups=32, sample_size=SIZE)
    pipe.vae = AutoencoderKL(**vae_cfg)
    clip_cfg = tiny_text.text_config(pipe.tokenizer.get_vocab(), 128)
    pipe.text_encoder = CLIPTextModel(CLIPTextConfig(**clip_cfg))
    t5_cfg = flux.tiny_t5_config(len(pipe.tokenizer_2))
    t5_cfg.update(d_model=128, d_kv=32, d_ff=256)
    pipe.text_encoder_2 = T5EncoderModel(T5Config(**t5_cfg))
    tiny.save_pipeline(pipe, folder, "flux1", info={"bench": "train_step"})


def build_dataset(folder: Path, n: int = 8) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    words = ["red", "green", "blue", "yellow", "square", "circle", "stripes", "dots"]
    for i in range(n):
        pixels = (rng.random((SIZE // 8, SIZE // 8, 3)) * 255).astype("uint8")
        Image.fromarray(pixels).resize((SIZE, SIZE), Image.Resampling.NEAREST).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(f"sks, {words[i % 8]}, {words[(i * 3 + 1) % 8]}", encoding="utf-8")


def peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024 if sys.platform != "darwin" else kb / 2**20


def _lora(unet, family: str = "sd1"):
    from peft import LoraConfig

    from app.core.train_config import NetworkOptions, Targets
    from app.engine.training.network import unet_target_names

    names = unet_target_names(unet, NetworkOptions(targets=Targets.ATTENTION_FF).targets, family)
    unet.requires_grad_(False)
    unet.add_adapter(LoraConfig(r=RANK, lora_alpha=RANK, target_modules=names, init_lora_weights=True))
    return [p for n, p in unet.named_parameters() if "lora_" in n]


def run_ours(model: Path, data: Path, steps: int, batch: int, work: Path, family: str = "sd1") -> dict:
    from app.core.events import Phase, Progress
    from app.core.train_config import TrainConfig
    from app.engine.training import Trainer
    from app.engine.training.run import read_log

    config = TrainConfig.from_dict(
        {
            "name": "bench",
            "base": str(model),
            "steps": steps,
            "seed": 0,
            "min_snr_gamma": 5.0 if family == "sd1" else 0.0,
            "flow": {"timestep_sampling": "uniform"},  # as the Flux reference's default weighting
            "output_dir": str(work / "runs"),
            "cache_dir": str(work / "cache"),
            "datasets": [{"path": str(data)}],
            "data": {
                "resolution": SIZE,
                "min_bucket": 64,
                "max_bucket": 256,
                "min_image_side": 32,
                "batch_size": batch,
                "caption_dropout": 0.0,
            },
            "network": {"rank": RANK, "alpha": float(RANK), "targets": "attention_ff"},
            "optimizer": {"schedule": "constant"},
            "output": {"save_every": 0},
            "sample": {"every": 0},
        }
    )
    marks = {}
    trainer = Trainer(
        config,
        on_event=lambda e: (
            marks.setdefault("first_step", time.perf_counter())
            if isinstance(e, Progress) and e.phase is Phase.TRAINING
            else None
        ),
    )
    start = time.perf_counter()
    result = trainer.run()
    times = [r["time"] for r in read_log(result.run_dir / "log.jsonl")]
    per_step = [b - a for a, b in zip(times, times[1:])][1:]  # the first steps warm up
    return {"step_s": statistics.median(per_step), "setup_s": marks["first_step"] - start - times[0]}


def run_bare(model: Path, steps: int, batch: int) -> dict:
    import torch
    import torch.nn.functional as F
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(model / "unet")
    params = _lora(unet)
    unet.train()
    opt = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, 4, SIZE // 8, SIZE // 8, generator=g)
    embeds = torch.randn(batch, 77, unet.config.cross_attention_dim, generator=g)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        timesteps = torch.randint(0, 1000, (batch,), generator=g)
        noise = torch.randn(latents.shape, generator=g)
        pred = unet(latents + noise, timesteps, embeds).sample
        F.mse_loss(pred, noise).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times[2:])}


def run_reference(model: Path, data: Path, steps: int, batch: int) -> dict:
    """The shape of diffusers' examples/text_to_image/train_text_to_image_lora.py, inline."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from diffusers.training_utils import compute_snr
    from PIL import Image
    from transformers import CLIPTextModel, CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(model / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(model / "text_encoder").requires_grad_(False)
    vae = AutoencoderKL.from_pretrained(model / "vae").requires_grad_(False)
    unet = UNet2DConditionModel.from_pretrained(model / "unet")
    sched = DDPMScheduler.from_pretrained(model / "scheduler")
    params = _lora(unet)
    unet.train()
    opt = torch.optim.AdamW(params, lr=1e-4)
    files = sorted(data.glob("*.png"))
    g = torch.Generator().manual_seed(0)
    times = []
    for step in range(steps):
        t0 = time.perf_counter()
        chosen = [files[(step * batch + i) % len(files)] for i in range(batch)]
        pixels = []
        for path in chosen:  # the example's transforms: resize, crop, flip, to tensor, normalise
            image = Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
            pixels.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1))
        captions = [path.with_suffix(".txt").read_text(encoding="utf-8") for path in chosen]
        ids = tokenizer(
            captions, max_length=tokenizer.model_max_length, padding="max_length", truncation=True, return_tensors="pt"
        ).input_ids
        latents = vae.encode(torch.stack(pixels)).latent_dist.sample(generator=g) * vae.config.scaling_factor
        noise = torch.randn(latents.shape, generator=g)
        timesteps = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=g)
        noisy = sched.add_noise(latents, noise, timesteps)
        embeds = text_encoder(ids, return_dict=False)[0]
        pred = unet(noisy, timesteps, embeds, return_dict=False)[0]
        snr = compute_snr(sched, timesteps)
        weights = torch.clamp(snr, max=5.0) / snr
        loss = (F.mse_loss(pred.float(), noise.float(), reduction="none").mean(dim=(1, 2, 3)) * weights).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times[2:])}


def _flux_inputs(transformer, latents, batch):
    from diffusers import FluxPipeline

    b, c, h, w = latents.shape
    return (
        FluxPipeline._pack_latents(latents, b, c, h, w),
        FluxPipeline._prepare_latent_image_ids(b, h // 2, w // 2, latents.device, latents.dtype),
    )


def _flux_unpack(out, shape):
    b, c, h, w = shape
    return out.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def run_bare_flux(model: Path, steps: int, batch: int) -> dict:
    import torch
    import torch.nn.functional as F
    from diffusers import FluxTransformer2DModel

    transformer = FluxTransformer2DModel.from_pretrained(model / "transformer")
    params = _lora(transformer, "flux1")
    transformer.train()
    opt = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, 16, SIZE // 8, SIZE // 8, generator=g)
    embeds = torch.randn(batch, 32, transformer.config.joint_attention_dim, generator=g)
    pooled = torch.randn(batch, transformer.config.pooled_projection_dim, generator=g)
    txt_ids = torch.zeros(32, 3)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        sigma = torch.rand((batch,), generator=g)
        noise = torch.randn(latents.shape, generator=g)
        tokens, img_ids = _flux_inputs(transformer, latents + noise, batch)
        out = transformer(
            hidden_states=tokens,
            timestep=sigma,
            guidance=torch.ones(batch),
            pooled_projections=pooled,
            encoder_hidden_states=embeds,
            txt_ids=txt_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0]
        F.mse_loss(_flux_unpack(out, latents.shape), noise).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times[2:])}


def run_reference_flux(model: Path, data: Path, steps: int, batch: int) -> dict:
    """The shape of diffusers' examples/dreambooth/train_dreambooth_lora_flux.py (custom captions,
    no latent cache: its defaults), inline."""
    import copy

    import numpy as np
    import torch
    from diffusers import FluxPipeline
    from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3
    from PIL import Image

    pipe = FluxPipeline.from_pretrained(model, local_files_only=True)
    for m in (pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        m.requires_grad_(False)
    transformer, vae = pipe.transformer, pipe.vae
    sched = copy.deepcopy(pipe.scheduler)
    params = _lora(transformer, "flux1")
    transformer.train()
    opt = torch.optim.AdamW(params, lr=1e-4)
    files = sorted(data.glob("*.png"))
    g = torch.Generator().manual_seed(0)
    times = []
    for step in range(steps):
        t0 = time.perf_counter()
        chosen = [files[(step * batch + i) % len(files)] for i in range(batch)]
        pixels = []
        for path in chosen:
            image = Image.open(path).convert("RGB").resize((SIZE, SIZE), Image.Resampling.BILINEAR)
            pixels.append(torch.from_numpy(np.asarray(image, dtype=np.float32) / 127.5 - 1).permute(2, 0, 1))
        captions = [path.with_suffix(".txt").read_text(encoding="utf-8") for path in chosen]
        with torch.no_grad():
            embeds, pooled, text_ids = pipe.encode_prompt(captions, None, max_sequence_length=32)
            x = vae.encode(torch.stack(pixels)).latent_dist.sample(generator=g)
        x = (x - vae.config.shift_factor) * vae.config.scaling_factor
        noise = torch.randn(x.shape, generator=g)
        u = compute_density_for_timestep_sampling("none", batch, logit_mean=0.0, logit_std=1.0, mode_scale=1.29)
        indices = (u * sched.config.num_train_timesteps).long()
        timesteps = sched.timesteps[indices]
        sigmas = sched.sigmas[indices].view(-1, 1, 1, 1)
        noisy = (1.0 - sigmas) * x + sigmas * noise
        tokens, img_ids = _flux_inputs(transformer, noisy, batch)
        out = transformer(
            hidden_states=tokens,
            timestep=timesteps / 1000,
            guidance=torch.ones(batch),
            pooled_projections=pooled,
            encoder_hidden_states=embeds,
            txt_ids=text_ids,
            img_ids=img_ids,
            return_dict=False,
        )[0]
        pred = _flux_unpack(out, x.shape)
        weighting = compute_loss_weighting_for_sd3("none", sigmas)
        loss = (weighting.float() * (pred.float() - (noise - x).float()) ** 2).reshape(batch, -1).mean(1).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        times.append(time.perf_counter() - t0)
    return {"step_s": statistics.median(times[2:])}


def child(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    work, model, data = Path(args.work), Path(args.work) / "model", Path(args.work) / "data"
    flux = args.family == "flux1"
    if args.variant == "ours":
        out = run_ours(model, data, args.steps, args.batch, work, args.family)
    elif args.variant == "bare":
        out = (run_bare_flux if flux else run_bare)(model, args.steps, args.batch)
    else:
        out = (run_reference_flux if flux else run_reference)(model, data, args.steps, args.batch)
    out["peak_rss_mb"] = peak_rss_mb()
    print("RESULT " + json.dumps(out))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=["sd1", "flux1"], default="sd1")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (0: torch's default)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the fastest counts")
    parser.add_argument("--variant", choices=["ours", "bare", "reference"], help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.variant:
        child(args)
        return 0
    with tempfile.TemporaryDirectory(prefix="loraloom-bench-") as tmp:
        work = Path(tmp)
        (build_flux_model if args.family == "flux1" else build_model)(work / "model")
        build_dataset(work / "data")
        results: dict[str, dict] = {}
        for _ in range(args.rounds):  # interleaved rounds; the fastest round of each counts (less noise)
            for variant in ("bare", "ours", "reference"):
                cmd = [
                    sys.executable,
                    __file__,
                    "--variant",
                    variant,
                    "--work",
                    str(work),
                    "--steps",
                    str(args.steps),
                    "--batch",
                    str(args.batch),
                    "--threads",
                    str(args.threads),
                    "--family",
                    args.family,
                ]
                env = dict(os.environ, LORALOOM_HOME=str(work / "home"))
                out = subprocess.run(cmd, capture_output=True, text=True, env=env)
                line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
                if out.returncode != 0 or not line:
                    print(out.stderr[-2000:], file=sys.stderr)
                    return 1
                got = json.loads(line[-1][7:])
                if variant not in results or got["step_s"] < results[variant]["step_s"]:
                    results[variant] = got
    bare, ours, ref = results["bare"], results["ours"], results["reference"]
    model = "Flux transformer 128 wide, 2 double + 4 single blocks" if args.family == "flux1" else "UNet 64/128/256"
    print(
        f"{model} + LoRA rank {RANK} (attention_ff), {SIZE}x{SIZE} px, batch {args.batch}, "
        f"median of {args.steps - 2} steps, best of {args.rounds} rounds, {args.threads or 'default'} thread(s), CPU"
    )
    print(
        f"  bare forward+backward (the limit)   {bare['step_s'] * 1000:8.1f} ms/step   peak RSS "
        f"{bare['peak_rss_mb']:7.0f} MB"
    )
    print(
        f"  LoRA Loom Trainer                    {ours['step_s'] * 1000:8.1f} ms/step   peak RSS "
        f"{ours['peak_rss_mb']:7.0f} MB   (setup incl. model load and caches {ours['setup_s']:.1f} s)"
    )
    print(
        f"  diffusers-example-style loop         {ref['step_s'] * 1000:8.1f} ms/step   peak RSS "
        f"{ref['peak_rss_mb']:7.0f} MB"
    )
    print(f"ours / limit     = {ours['step_s'] / bare['step_s']:.2f}x  (1.00x = no overhead over the model's own work)")
    print(f"reference / ours = {ref['step_s'] / ours['step_s']:.2f}x  (above 1: our step is that much faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
