"""``loraloom``: the GUI with no arguments, and every job headless as a sub-command.

Heavy libraries (torch, diffusers) are imported inside the sub-commands that need
them, so ``loraloom --version`` and ``loraloom --help`` answer at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app import __version__


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])


def build_parser() -> argparse.ArgumentParser:
    from app.core.configs import Scheduler

    parser = argparse.ArgumentParser(
        prog="loraloom",
        description="LoRA Loom: make, caption, train and blend image LoRAs. With no command, starts the GUI.",
    )
    parser.add_argument("--version", action="version", version=f"loraloom {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser("gui", help="start the desktop app (the default)")

    tiny = sub.add_parser("tiny-model", help="write a tiny offline model (for tests and demos)")
    tiny.add_argument("dir", type=Path, help="folder to create")
    tiny.add_argument("--family", default="sd1", choices=["sd1", "sdxl"])
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--overwrite", action="store_true", help="replace an existing folder")

    gen = sub.add_parser("generate", help="render a picture from a base model")
    gen.add_argument("--base", required=True, help="Hub repo id, diffusers folder or .safetensors checkpoint")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--negative", default="")
    gen.add_argument("--seed", type=int, default=-1, help="-1 (default) picks a random seed")
    gen.add_argument("--steps", type=int, default=None, help="default 20 (4 for tiny models)")
    gen.add_argument("--guidance", type=float, default=7.0)
    gen.add_argument("--size", default=None, help="WIDTHxHEIGHT, default 512x512 (1024x1024 SDXL, 64x64 tiny)")
    gen.add_argument("--scheduler", default=Scheduler.EULER.value, choices=[s.value for s in Scheduler])
    gen.add_argument("--out", type=Path, default=None, help="PNG to write (default: the outputs folder)")
    _add_model_args(gen)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "gui"
    try:
        if command == "gui":
            from app.ui.app import run_gui

            return run_gui([sys.argv[0]])
        if command == "tiny-model":
            return cmd_tiny_model(args)
        if command == "generate":
            return cmd_generate(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {command!r}")
    return 2


def _fail(message: str) -> int:
    print(f"loraloom: error: {message}", file=sys.stderr)
    return 1


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from app.engine.tiny import write_tiny_model

    try:
        out = write_tiny_model(args.dir, family=args.family, seed=args.seed, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as exc:
        return _fail(str(exc))
    print(out)
    return 0


def _defaults_for(base: str) -> tuple[int, tuple[int, int]]:
    """Steps and size when not given: tiny test models get tiny defaults."""
    from app.engine.models import ModelError, check_source

    try:
        src = check_source(base)
    except ModelError:
        return 20, (512, 512)
    from app.engine.tiny import INFO_FILE

    if src.kind == "folder" and (Path(src.text) / INFO_FILE).is_file():
        return 4, (64, 64)
    if src.family is not None and src.family.value == "sdxl":
        return 20, (1024, 1024)
    return 20, (512, 512)


def cmd_generate(args: argparse.Namespace) -> int:
    from app.core.configs import ConfigError, GenerateRequest, parse_size

    steps, size = _defaults_for(args.base)
    try:
        width, height = parse_size(args.size) if args.size else size
        request = GenerateRequest.from_dict(
            {
                "base": args.base,
                "prompt": args.prompt,
                "negative": args.negative,
                "seed": args.seed,
                "steps": args.steps if args.steps is not None else steps,
                "guidance": args.guidance,
                "width": width,
                "height": height,
                "scheduler": args.scheduler,
                "device": args.device,
                "dtype": args.dtype,
            },
            where="generate",
        )
    except ConfigError as exc:
        return _fail(str(exc))
    if args.out is not None and args.out.suffix.lower() != ".png":
        return _fail(f"{args.out}: the output must be a .png file")

    from tqdm import tqdm

    from app.engine.models import ModelError
    from app.engine.rendering import Renderer

    renderer = Renderer()
    try:
        print(f"loading {request.base} ...", file=sys.stderr)
        renderer.ensure_model(request.model_spec())
        with tqdm(total=request.steps, unit="step", file=sys.stderr, desc="render") as bar:
            result = renderer.render(
                request, out_path=args.out, on_step=lambda step, total, eta: bar.update(step - bar.n)
            )
    except ModelError as exc:
        return _fail(str(exc))
    print(result.path)
    print(f"seed {result.seed}, {result.seconds:.2f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
