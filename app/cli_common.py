"""What every ``loraloom`` sub-command module shares: the one-sentence failure and the model options."""

from __future__ import annotations

import argparse
import sys


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])


def fail(message: str) -> int:
    """Print the one sentence a user sees for bad input (``loraloom: error: …``); the exit status 1."""
    print(f"loraloom: error: {message}", file=sys.stderr)
    return 1
