"""Batched captioning vs one image at a time, on the tiny offline BLIP (and the tiny WD14 tagger).

Runs ``run_captioning`` (the code the worker and ``loraloom caption`` use) on N generated
images twice, with ``batch_size`` B and with 1, and prints images per second and the ratio.
The tiny models only show the batching overhead saved per call on this machine; on a GPU
with a full-size model the gap is larger (the GPU is idle between one-image calls).

    .venv/bin/python bench/captioning.py [--images 64] [--batch 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def images_per_second(captioner, folder: Path, model: Path, batch: int, repeats: int, max_new_tokens: int) -> float:
    from app.core.dataset.caption_config import CaptionRequest
    from app.engine.captioning import run_captioning

    rates = []
    for _ in range(repeats):
        for txt in folder.glob("*.txt"):
            txt.unlink()
        request = CaptionRequest.from_dict(
            {
                "folder": str(folder),
                "model": str(model),
                "batch_size": batch,
                "max_new_tokens": max_new_tokens,
                "min_side": 0,
            }
        )
        summary = run_captioning(captioner, request)
        rates.append(summary.written / summary.seconds)
    return statistics.median(rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-new-tokens", type=int, default=12)
    args = parser.parse_args()

    import torch
    from PIL import Image

    from app.core.dataset.caption_config import CaptionRequest
    from app.engine.captioning import load_captioner
    from app.engine.captioning.tiny import write_tiny_blip, write_tiny_wd_tagger

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    work = Path(tempfile.mkdtemp(prefix="loraloom-bench-caption-"))
    try:
        folder = work / "images"
        folder.mkdir()
        for i in range(args.images):
            Image.new("RGB", (320, 288), ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)).save(folder / f"{i:03d}.png")
        results = []
        for name, model in (
            ("tiny BLIP", write_tiny_blip(work / "blip")),
            ("tiny WD14 tagger", write_tiny_wd_tagger(work / "wd")),
        ):
            captioner = load_captioner(CaptionRequest.from_dict({"folder": str(folder), "model": str(model)}))
            # warm-up (first call allocates)
            images_per_second(captioner, folder, model, args.batch, 1, args.max_new_tokens)
            batched = images_per_second(captioner, folder, model, args.batch, args.repeats, args.max_new_tokens)
            single = images_per_second(captioner, folder, model, 1, args.repeats, args.max_new_tokens)
            results.append((name, batched, single))
        print(
            f"{args.images} images, batch {args.batch} vs 1, median of {args.repeats} runs, "
            f"{torch.get_num_threads()} CPU threads"
        )
        for name, batched, single in results:
            print(
                f"{name:18} batched {batched:7.1f} img/s   one at a time {single:7.1f} img/s   "
                f"ratio {batched / single:.1f}x"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
