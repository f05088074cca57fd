"""Pre-train a tiny Stable Diffusion model into a committed test fixture (DESIGN.md §6).

Starts from ``app.engine.tiny.build_tiny_pipeline`` (seeded random weights), then
  1. VAE: a pass-through start (see ``passthrough_init``), then autoencoder training
     on 64x64 flat colours and two-colour shapes; ``scaling_factor`` = 1 / latent std;
  2. UNet: epsilon objective with the scheduler's alphas, frozen text encoder(s),
     10 % empty captions for guidance, offset noise, captions such as
     "a red square on blue";
  3. reports the VAE round-trip error and the mean colour of renders, and saves the
     pipeline folder (fp32 safetensors) atomically, with the numbers in
     ``loraloom_tiny.json``.

Everything is seeded and runs on the CPU with one thread by default (the same bits on
any machine; about 5 minutes a family on the 2-core development machine):

    python scripts/pretrain_tiny.py --family sd1 --out tests/fixtures/tiny-sd1-pretrained --seed 0
    python scripts/pretrain_tiny.py --family sdxl --out tests/fixtures/tiny-sdxl-pretrained --seed 0
    python scripts/pretrain_tiny.py --family flux1 --out tests/fixtures/tiny-flux1-pretrained --seed 0

Flux.1 trains its transformer with the trainer's flow-matching objective instead (step 2 is
the same VAE recipe on its 16 latent channels, with a shift_factor as well).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from diffusers.models.attention_processor import Attention  # noqa: E402
from diffusers.models.downsampling import Downsample2D  # noqa: E402
from diffusers.models.resnet import ResnetBlock2D  # noqa: E402
from diffusers.models.upsampling import Upsample2D  # noqa: E402

from app.engine.tiny import FAMILIES, build_tiny_pipeline, save_pipeline  # noqa: E402

SIZE = 64
VERBOSE = False  # --verbose: metrics while training
FLAT_SHARE = 0.5  # of the captioned pictures, flat colours
HIGH_T_SHARE = 0.5  # of the UNet timesteps, drawn from 500..999 instead of 0..999
COLOURS = {  # name -> RGB in [0, 1]
    "red": (0.85, 0.1, 0.1),
    "green": (0.1, 0.7, 0.15),
    "blue": (0.1, 0.2, 0.85),
    "yellow": (0.95, 0.85, 0.1),
    "orange": (0.95, 0.5, 0.05),
    "purple": (0.5, 0.15, 0.65),
    "pink": (0.95, 0.55, 0.7),
    "brown": (0.45, 0.28, 0.12),
    "black": (0.05, 0.05, 0.05),
    "white": (0.95, 0.95, 0.95),
    "gray": (0.5, 0.5, 0.5),
    "cyan": (0.1, 0.8, 0.85),
}
NAMES = list(COLOURS)
PALETTE = np.array([COLOURS[n] for n in NAMES], dtype=np.float32)


# ---------------------------------------------------------------------------- pictures
def _masks(rng: np.random.Generator, kinds: np.ndarray) -> np.ndarray:
    """Foreground masks (N, H, W): 0 flat, 1 square, 2 circle, 3 stripes."""
    n = len(kinds)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) + 0.5
    cx = rng.uniform(20, 44, n)[:, None, None]
    cy = rng.uniform(20, 44, n)[:, None, None]
    half = rng.uniform(14, 24, n)[:, None, None]
    square = (np.abs(xx - cx) < half) & (np.abs(yy - cy) < half)
    circle = (xx - cx) ** 2 + (yy - cy) ** 2 < (half * 1.15) ** 2
    period = rng.choice([8.0, 16.0, 32.0], n)[:, None, None]
    vertical = rng.random(n)[:, None, None] < 0.5
    coord = np.where(vertical, xx, yy)
    stripes = (coord % period) < period / 2
    k = kinds[:, None, None]
    mask = np.where(k == 1, square, np.where(k == 2, circle, np.where(k == 3, stripes, False)))
    return mask.astype(np.float32)


def vae_batch(rng: np.random.Generator, n: int) -> torch.Tensor:
    """Arbitrary RGB flat colours (1/3) and two-colour shapes, in [-1, 1], NCHW."""
    kinds = rng.integers(0, 4, n)
    kinds[: n // 3] = 0
    fg = rng.random((n, 3)).astype(np.float32)
    bg = rng.random((n, 3)).astype(np.float32)
    # a quarter of the colours are the saturated/named ones the UNet will see
    named = rng.random(n) < 0.25
    fg[named] = PALETTE[rng.integers(0, len(NAMES), named.sum())]
    named = rng.random(n) < 0.25
    bg[named] = PALETTE[rng.integers(0, len(NAMES), named.sum())]
    m = _masks(rng, kinds)[:, None]
    img = bg[:, :, None, None] * (1 - m) + fg[:, :, None, None] * m
    return torch.from_numpy(img * 2 - 1)


def captioned_set(rng: np.random.Generator, n: int) -> tuple[torch.Tensor, list[str]]:
    """Named-colour pictures with captions; a caption names the dominant colour first."""
    kinds = rng.integers(0, 4, n)
    kinds[: int(n * FLAT_SHARE)] = 0
    fi = rng.integers(0, len(NAMES), n)
    bi = (fi + rng.integers(1, len(NAMES), n)) % len(NAMES)  # a different colour
    m = _masks(rng, kinds)[:, None]
    m[kinds == 0] = 1.0  # a flat picture is all foreground: its caption names that colour
    fg, bg = PALETTE[fi], PALETTE[bi]
    img = bg[:, :, None, None] * (1 - m) + fg[:, :, None, None] * m
    img = img + rng.normal(0, 0.02, (n, 3, 1, 1)).astype(np.float32)  # slight tint
    captions = []
    for k, f, b, r in zip(kinds, fi, bi, rng.random(n)):
        f, b = NAMES[f], NAMES[b]
        if k == 0:
            captions.append([f, f"a {f} background", f"plain {f}", f"a photo of {f}"][int(r * 4)])
        else:
            shape = {1: "square", 2: "circle", 3: "stripes"}[int(k)]
            art = "" if shape == "stripes" else "a "
            captions.append(f"{art}{f} {shape} on {b}" if r < 0.6 else f"{art}{f} {shape}")
    return torch.from_numpy(np.clip(img, 0, 1) * 2 - 1), captions


# ---------------------------------------------------------------------------- training
K = 5.0  # the constant channel that keeps GroupNorm (almost) linear


@torch.no_grad()
def passthrough_init(vae) -> None:
    """Start the VAE as "8x8 average colour in, nearest upsample out" (a flat colour round-trips).

    GroupNorm removes each group's mean and scale, so a randomly initialised VAE learns
    flat colours very slowly (a few hundred CPU steps barely beat grey). Here every
    residual branch and attention output starts at zero, down/upsampling average /
    repeat pixels, and each colour c travels as a quad [c, K, -c, -K]: a GroupNorm of
    quads is linear in c up to (c/K)^2 and silu(x) - silu(-x) = x undoes the SiLU.
    Training then refines edges and shapes from this start.
    """
    for m in vae.modules():
        if isinstance(m, ResnetBlock2D):  # residual branch off; shortcut = identity embedding
            m.conv2.weight.zero_()
            m.conv2.bias.zero_()
            if m.conv_shortcut is not None:
                _eye(m.conv_shortcut)
        elif isinstance(m, Attention):
            m.to_out[0].weight.zero_()
            m.to_out[0].bias.zero_()
        elif isinstance(m, Downsample2D):  # stride-2 3x3 conv on (0,1,0,1)-padded input
            _eye(m.conv, taps=(slice(0, 2), slice(0, 2)), value=0.25)
        elif isinstance(m, Upsample2D):  # nearest x2, then a 3x3 conv
            _eye(m.conv)
    lc = vae.config.latent_channels
    sigma = math.sqrt(K * K / 2)  # std of a [c, K, -c, -K] group when c = 0
    enc, dec = vae.encoder, vae.decoder
    _quads_in(enc.conv_in, 3, lc)
    _quads_out(enc.conv_out, 3, sigma)
    enc.conv_out.bias[lc:] = -10.0  # log-variance: a tiny posterior noise to start with
    for conv in (vae.quant_conv, vae.post_quant_conv):
        if conv is not None:
            _eye(conv)
    _quads_in(dec.conv_in, lc, lc)
    _quads_out(dec.conv_out, 3, sigma)


def _eye(conv, taps=None, value: float = 1.0) -> None:
    """Channel i -> channel i (the first min(in, out)), at the centre tap unless ``taps``."""
    w = conv.weight
    w.zero_()
    conv.bias.zero_()
    n = min(w.shape[0], w.shape[1])
    c = w.shape[-1] // 2
    ty, tx = taps or (slice(c, c + 1), slice(c, c + 1))
    for i in range(n):
        w[i, i, ty, tx] = value


def _quads_in(conv, n_src: int, n_quads: int) -> None:
    """Source channel i -> channels 4i..4i+3 = [x_i, K, -x_i, -K] (as many quads as fit)."""
    w, b = conv.weight, conv.bias
    w.zero_()
    b.zero_()
    c = w.shape[-1] // 2
    n_quads = min(n_quads, w.shape[0] // 4)  # Flux's 16 latent channels do not all fit
    for i in range(n_quads):
        if i < n_src:
            w[4 * i, i, c, c] = 1.0
            w[4 * i + 2, i, c, c] = -1.0
        b[4 * i + 1] = K
        b[4 * i + 3] = -K


def _quads_out(conv, n_out: int, scale: float) -> None:
    """Output channel i = scale * (silu(q_4i) - silu(q_4i+2)) = scale * q_4i."""
    w = conv.weight
    w.zero_()
    conv.bias.zero_()
    c = w.shape[-1] // 2
    for i in range(n_out):
        w[i, 4 * i, c, c] = scale
        w[i, 4 * i + 2, c, c] = -scale


def train_vae(vae, steps: int, batch: int, seed: int, lr: float) -> dict:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    passthrough_init(vae)
    vae.train()
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps)))
    )
    t0 = time.time()
    for step in range(steps):
        x = vae_batch(rng, batch)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        rec_loss = F.l1_loss(rec, x) + F.mse_loss(rec, x)
        kl = post.kl().mean() / (4 * 8 * 8)
        loss = rec_loss + 1e-4 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            print(f"vae {step:5d} rec {rec_loss.item():.4f} kl {kl.item():.2f} ({time.time() - t0:.0f} s)", flush=True)
            if VERBOSE:
                vae.eval()
                print(vae_metrics(vae, seed), flush=True)
                vae.train()
    vae.eval()
    return {"vae_seconds": round(time.time() - t0, 1)}


@torch.no_grad()
def vae_metrics(vae, seed: int) -> dict:
    rng = np.random.default_rng(seed + 12345)  # held out: never used in training
    flat = torch.from_numpy(rng.random((64, 3)).astype(np.float32))
    x = (flat[:, :, None, None].expand(-1, -1, SIZE, SIZE) * 2 - 1).contiguous()
    rec = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
    flat_err = ((rec - x).abs().mean() / 2).item()
    shapes = vae_batch(rng, 64)
    rec = vae.decode(vae.encode(shapes).latent_dist.mode()).sample.clamp(-1, 1)
    shape_err = ((rec - shapes).abs().mean() / 2).item()
    red = torch.tensor([1.0, -1.0, -1.0])[None, :, None, None].expand(1, 3, SIZE, SIZE)
    rec = vae.decode(vae.encode(red).latent_dist.mode()).sample.clamp(-1, 1)
    red_err = ((rec - red).abs().mean() / 2).item()
    return {
        "vae_flat_mae": round(flat_err, 4),
        "vae_shapes_mae": round(shape_err, 4),
        "vae_pure_red_mae": round(red_err, 4),
    }


@torch.no_grad()
def set_scaling_factor(vae, seed: int) -> float:
    """scaling_factor = 1 / std of the latents (and, for a VAE with a shift, as Flux's:
    shift_factor = their mean, so that (z - shift) * scale has unit spread)."""
    rng = np.random.default_rng(seed + 777)
    imgs, _ = captioned_set(rng, 256)
    z = vae.encode(torch.cat([imgs, vae_batch(rng, 256)])).latent_dist.sample()
    if vae.config.get("shift_factor") is not None:
        vae.register_to_config(shift_factor=round(float(z.mean()), 5))
    factor = float(1.0 / z.std())
    vae.register_to_config(scaling_factor=round(factor, 5))
    return vae.config.scaling_factor


@torch.no_grad()
def encode_captions(pipe, family: str, captions: list[str]):
    """Per unique caption: (prompt_embeds, pooled or None); "" -> the unconditional one."""
    uniq = sorted(set(captions) | {""})
    embeds, pooled = {}, {}
    for i in range(0, len(uniq), 64):
        chunk = uniq[i : i + 64]
        if family == "sdxl":
            pe, _, pp, _ = pipe.encode_prompt(
                chunk, device="cpu", num_images_per_prompt=1, do_classifier_free_guidance=False
            )
        else:
            pe, _ = pipe.encode_prompt(chunk, "cpu", 1, False)
            pp = [None] * len(chunk)
        for j, c in enumerate(chunk):
            embeds[c], pooled[c] = pe[j], pp[j]
    if family == "sdxl":  # force_zeros_for_empty_prompt: the pipeline's negative is zeros
        embeds[""] = torch.zeros_like(embeds[""])
        pooled[""] = torch.zeros_like(pooled[""])
    return embeds, pooled


def train_unet(
    pipe, family: str, steps: int, batch: int, seed: int, lr: float, n_images: int, offset_noise: float
) -> dict:
    rng = np.random.default_rng(seed + 1)
    torch.manual_seed(seed + 1)
    unet, vae = pipe.unet, pipe.vae
    imgs, captions = captioned_set(rng, n_images)
    with torch.no_grad():
        dist = [vae.encode(imgs[i : i + 128]).latent_dist for i in range(0, n_images, 128)]
        mean = torch.cat([d.mean for d in dist])
        std = torch.cat([d.std for d in dist])
    embeds, pooled = encode_captions(pipe, family, captions)
    sf = vae.config.scaling_factor
    alphas = pipe.scheduler.alphas_cumprod.float()
    time_ids = torch.tensor([[SIZE, SIZE, 0, 0, SIZE, SIZE]], dtype=torch.float32)

    unet.train()
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / steps)))
    )
    t0 = time.time()
    avg = None
    for step in range(steps):
        idx = torch.from_numpy(rng.integers(0, n_images, batch))
        z = (mean[idx] + std[idx] * torch.randn_like(mean[idx])) * sf
        caps = ["" if rng.random() < 0.1 else captions[i] for i in idx.tolist()]
        cond = torch.stack([embeds[c] for c in caps])
        # half uniform, half in the noisier half, where the caption decides the colour
        t = rng.integers(0, 1000, batch)
        t = torch.from_numpy(np.where(rng.random(batch) < HIGH_T_SHARE, 500 + t // 2, t))
        noise = torch.randn_like(z)
        # offset noise: with 8x8 latents the noise's own mean rivals a picture's colour, so
        # make the mean noisier in training; the model then takes colour from the caption
        noise = noise + offset_noise * torch.randn(batch, z.shape[1], 1, 1)
        a = alphas[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * z + (1 - a).sqrt() * noise
        extra = {}
        if family == "sdxl":
            extra["added_cond_kwargs"] = {
                "text_embeds": torch.stack([pooled[c] for c in caps]),
                "time_ids": time_ids.expand(batch, -1),
            }
        pred = unet(noisy, t, encoder_hidden_states=cond, **extra).sample
        loss = F.mse_loss(pred, noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        sched.step()
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if step % 200 == 0 or step == steps - 1:
            print(f"unet {step:5d} loss {avg:.4f} ({time.time() - t0:.0f} s)", flush=True)
            if VERBOSE and step:
                unet.eval()
                print(render_metrics(pipe, ["red", "blue", "a green square"], [0], 12, 5.0), flush=True)
                unet.train()
    unet.eval()
    return {"unet_seconds": round(time.time() - t0, 1), "unet_final_loss": round(avg, 4)}


def train_transformer(pipe, steps: int, batch: int, seed: int, lr: float, n_images: int) -> dict:
    """Flux: the flow-matching objective of the trainer (x_t = (1 - s) x0 + s noise, target
    noise - x0), through the engine's own packing and model call, frozen text encoders; the
    guidance input drawn from 1..5 so that any guidance a test renders with is one it has seen."""
    from app.engine.families import engine

    flux = engine("flux1")
    rng = np.random.default_rng(seed + 1)
    torch.manual_seed(seed + 1)
    model, vae = pipe.transformer, pipe.vae
    imgs, captions = captioned_set(rng, n_images)
    with torch.no_grad():
        dist = [vae.encode(imgs[i : i + 128]).latent_dist for i in range(0, n_images, 128)]
        mean, std = torch.cat([d.mean for d in dist]), torch.cat([d.std for d in dist])
        uniq = sorted(set(captions) | {""})
        enc = {}
        for i in range(0, len(uniq), 64):
            out = flux.encode_for_training(pipe, uniq[i : i + 64], "cpu")
            enc.update({c: (out["embeds"][j], out["pooled"][j]) for j, c in enumerate(uniq[i : i + 64])})
    shift, scale = vae.config.shift_factor, vae.config.scaling_factor
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * s / steps)))
    )
    t0, avg = time.time(), None
    for step in range(steps):
        idx = torch.from_numpy(rng.integers(0, n_images, batch))
        z = ((mean[idx] + std[idx] * torch.randn_like(mean[idx])) - shift) * scale
        caps = ["" if rng.random() < 0.1 else captions[i] for i in idx.tolist()]
        cond = {
            "encoder_hidden_states": torch.stack([enc[c][0] for c in caps]),
            **flux.added_conditioning(
                {"embeds": enc[caps[0]][0][None], "pooled": torch.stack([enc[c][1] for c in caps])},
                [],
                "cpu",
                torch.float32,
            ),
        }
        # half uniform, half in the noisier half, where the caption decides the colour
        sigma = torch.from_numpy(rng.random(batch).astype(np.float32))
        sigma = torch.where(torch.from_numpy(rng.random(batch) < HIGH_T_SHARE), 0.5 + sigma / 2, sigma)
        noisy, target = flux.noisy_and_target(pipe.scheduler, z, torch.randn_like(z), sigma * 1000)
        pred = flux.predict(model, noisy, sigma * 1000, cond, float(rng.uniform(1.0, 5.0)))
        loss = F.mse_loss(pred, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        avg = loss.item() if avg is None else 0.98 * avg + 0.02 * loss.item()
        if step % 200 == 0 or step == steps - 1:
            print(f"transformer {step:5d} loss {avg:.4f} ({time.time() - t0:.0f} s)", flush=True)
            if VERBOSE and step:
                model.eval()
                print(render_metrics(pipe, ["red", "blue", "a green square"], [0], 12, 3.5), flush=True)
                model.train()
    model.eval()
    return {"unet_seconds": round(time.time() - t0, 1), "unet_final_loss": round(avg, 4)}


@torch.no_grad()
def render_metrics(pipe, prompts: list[str], seeds: list[int], steps: int, guidance: float) -> dict:
    pipe.set_progress_bar_config(disable=True)
    out = {}
    for p in prompts:
        means = []
        for s in seeds:
            extra = {"max_sequence_length": pipe.tokenizer_2.model_max_length} if hasattr(pipe, "transformer") else {}
            img = pipe(
                p,
                num_inference_steps=steps,
                guidance_scale=guidance,
                height=SIZE,
                width=SIZE,
                generator=torch.Generator().manual_seed(s),
                **extra,
            ).images[0]
            means.append(np.asarray(img, dtype=np.float32).reshape(-1, 3).mean(0) / 255)
        out[p] = [round(float(v), 3) for v in np.mean(means, 0)]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--family", choices=FAMILIES, default="sd1")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--vae-steps", type=int, default=200)
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--vae-lr", type=float, default=2e-4)
    ap.add_argument("--unet-steps", type=int, default=1500)
    ap.add_argument("--unet-batch", type=int, default=32)
    ap.add_argument("--unet-lr", type=float, default=2e-3)
    ap.add_argument("--offset-noise", type=float, default=0.2)
    ap.add_argument("--images", type=int, default=2048, help="captioned pictures for the UNet")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: same numbers on any machine, robust when busy)"
    )
    ap.add_argument("--overwrite", action="store_true")
    ap.add_argument("--verbose", action="store_true", help="print metrics while training")
    args = ap.parse_args(argv)

    global VERBOSE
    VERBOSE = args.verbose
    torch.set_num_threads(args.threads)
    t_start = time.time()
    pipe = build_tiny_pipeline(args.family, args.seed)
    argv_used = sys.argv[1:] if argv is None else argv
    info: dict = {
        "seed": args.seed,
        "pretrained": True,
        "command": "python scripts/pretrain_tiny.py " + " ".join(argv_used),
    }
    info.update(train_vae(pipe.vae, args.vae_steps, args.vae_batch, args.seed, args.vae_lr))
    info["vae_scaling_factor"] = set_scaling_factor(pipe.vae, args.seed)
    info.update(vae_metrics(pipe.vae, args.seed))
    print(json.dumps(info), flush=True)
    if hasattr(pipe, "transformer"):  # Flux: flow matching, no offset noise
        info.update(train_transformer(pipe, args.unet_steps, args.unet_batch, args.seed, args.unet_lr, args.images))
    else:
        info.update(
            train_unet(
                pipe,
                args.family,
                args.unet_steps,
                args.unet_batch,
                args.seed,
                args.unet_lr,
                args.images,
                args.offset_noise,
            )
        )
    t_render = time.time()
    guidance = 3.5 if hasattr(pipe, "transformer") else 5.0  # Flux [dev]'s distilled guidance, SD's CFG
    info["render_mean_rgb"] = render_metrics(
        pipe,
        ["red", "blue", "green", "a red square", "a blue square", "a yellow circle on black"],
        seeds=[0, 1, 2, 3],
        steps=20,
        guidance=guidance,
    )
    info["render_settings"] = f"64x64, 20 steps, guidance {guidance:g}, seeds 0-3, mean RGB in [0, 1]"
    info["render_seconds"] = round(time.time() - t_render, 1)
    info["total_seconds"] = round(time.time() - t_start, 1)
    print(json.dumps(info, indent=1), flush=True)
    save_pipeline(pipe, args.out, args.family, overwrite=args.overwrite, info=info)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
