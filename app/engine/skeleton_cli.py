"""``loraloom skeleton``: write a full-size random-weight model (no torch import at parse time)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.core.families import all_variants

FAMILIES = all_variants()  # app.engine.single_file.Variant values


def add_skeleton_parser(sub) -> None:
    p = sub.add_parser("skeleton", help="write a full-size model with random weights (real shapes, no download)")
    p.add_argument("dir", type=Path, help="folder to create (diffusers layout) or to put the .safetensors in")
    p.add_argument("--family", required=True, choices=FAMILIES)
    p.add_argument(
        "--single-file",
        action="store_true",
        help="one checkpoint in the original LDM/SGM layout (as A1111 and ComfyUI keep them); Flux.1: the "
        "transformer-only file in BFL names (flux1-dev.safetensors, as ComfyUI and Forge keep it)",
    )
    p.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"], help="on disk (default fp16)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing model there")


def cmd_skeleton(args: argparse.Namespace) -> int:
    from app.engine.models import quiet_loading

    quiet_loading()
    from app.engine.skeleton import SkeletonError, write_skeleton

    try:
        out = write_skeleton(
            args.dir,
            args.family,
            single_file=args.single_file,
            dtype=args.dtype,
            seed=args.seed,
            overwrite=args.overwrite,
        )
    except SkeletonError as exc:
        print(f"loraloom: error: {exc}", file=sys.stderr)
        return 1
    print(out)
    return 0
