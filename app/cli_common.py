"""What every ``loraloom`` sub-command module shares: the one-sentence failure and the model options."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])


def add_companion_args(p: argparse.ArgumentParser) -> None:
    """The files a Flux.1 transformer file (as ComfyUI/Forge keep it) needs beside it."""
    p.add_argument("--clip-l", default="", metavar="FILE", help="with a Flux transformer file: clip_l.safetensors")
    p.add_argument("--t5", default="", metavar="FILE", help="with a Flux transformer file: t5xxl_fp16.safetensors")
    p.add_argument("--vae", default="", metavar="FILE", help="with a Flux transformer file: ae.safetensors")
    p.add_argument(
        "--t5-tokenizer", default="", metavar="DIR", help="a local T5 tokenizer folder (default: fetched once)"
    )


def base_with_companions(args: argparse.Namespace) -> str:
    """``--base`` with ``--clip-l/--t5/--vae/--t5-tokenizer`` as one model choice string."""
    from app.core.model_choice import ModelChoice, has_companions, parse

    choice = parse(args.base) if has_companions(args.base) else ModelChoice(args.base.strip())
    given = {k: getattr(args, k, "") for k in ("clip_l", "t5", "vae", "t5_tokenizer")}
    given = {k: str(Path(v).expanduser()) for k, v in given.items() if v}
    if not given:
        return args.base
    return ModelChoice(**{**choice.__dict__, **given}).text()


def fail(message: str) -> int:
    """Print the one sentence a user sees for bad input (``loraloom: error: …``); the exit status 1."""
    print(f"loraloom: error: {message}", file=sys.stderr)
    return 1
