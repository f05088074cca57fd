"""``loraloom``: the GUI with no arguments, and every job headless as a sub-command.

Heavy libraries (torch, diffusers) are imported inside the sub-commands that need
them, so ``loraloom --version`` and ``loraloom --help`` answer at once.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from app import cli_adapters, cli_dataset, cli_hub, cli_render, cli_setup, cli_train
from app.cli_common import add_companion_args, add_model_args, fail
from app.core.families import Family
from app.core.files import SaveError


def build_parser() -> argparse.ArgumentParser:
    from app.core.configs import Scheduler

    parser = argparse.ArgumentParser(
        prog="loraloom",
        description="LoRA Loom: make, caption, train and blend image LoRAs. With no command, starts the GUI.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    cli_setup.add_parsers(parser, sub)  # --version, setup-worker, doctor

    gui = sub.add_parser("gui", help="start the desktop app (the default)")
    gui.add_argument("file", nargs="?", default=None, help="a .safetensors adapter to show in the Library tab")

    tiny = sub.add_parser("tiny-model", help="write a tiny offline model (for tests and demos)")
    tiny.add_argument("dir", type=Path, help="folder to create")
    tiny.add_argument("--family", default="sd1", choices=[f.value for f in Family])
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--overwrite", action="store_true", help="replace an existing folder")

    gen = sub.add_parser("generate", help="render a picture from a base model")
    gen.add_argument("--base", required=True, help="Hub repo id, diffusers folder or .safetensors checkpoint")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--negative", default="")
    gen.add_argument("--seed", type=int, default=-1, help="-1 (default) picks a random seed")
    gen.add_argument("--steps", type=int, default=None, help="default 20 (4 for tiny models)")
    gen.add_argument("--guidance", type=float, default=None, help="default: the base family's (7.0 for SD)")
    gen.add_argument("--size", default=None, help="WIDTHxHEIGHT, default 512x512 (1024x1024 SDXL, 64x64 tiny)")
    gen.add_argument(
        "--scheduler",
        default=None,
        choices=[s.value for s in Scheduler],
        help="default: the base family's (Euler for SD)",
    )
    gen.add_argument("--out", type=Path, default=None, help="PNG to write (default: the outputs folder)")
    gen.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="PATH[:WEIGHT[:TE_WEIGHT]][:lbw=BLOCKS][:start=F][:stop=F]",
        help="an adapter to mix in (repeatable), e.g. style.safetensors:0.8:lbw=MIDD (start/stop: fractions of steps)",
    )
    add_model_args(gen)
    add_companion_args(gen)

    bake = sub.add_parser("bake", help="bake a weighted mix of adapters into one kohya LoRA file")
    bake.add_argument("--base", required=True, help="the base model the adapters belong to")
    bake.add_argument(
        "--lora",
        action="append",
        required=True,
        metavar="PATH[:WEIGHT[:TE_WEIGHT]][:lbw=BLOCKS]",
        help="an adapter and its weight (repeatable), e.g. A.safetensors:0.8 or A.safetensors:0.8:lbw=MIDD",
    )
    bake.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    bake.add_argument(
        "--rank",
        type=int,
        default=0,
        help="reduce every layer to this rank by SVD (default: exact, rank = sum of ranks)",
    )
    add_model_args(bake)
    add_companion_args(bake)

    insp = sub.add_parser("inspect", help="print what an adapter file is, as JSON (no model needed)")
    insp.add_argument("file", type=Path)
    insp.add_argument("--base", help="also apply it to this base model and print the load report")
    insp.add_argument("--blocks", action="store_true", help="also print its change (‖ΔW‖) per block: where it acts")
    add_model_args(insp)

    cli_adapters.add_convert_parser(sub)

    cli_dataset.add_parsers(sub)  # dataset check, caption
    cli_hub.add_parsers(sub)  # hub search|download, library list|add
    cli_train.add_parser(sub)
    from app.engine.skeleton_cli import add_skeleton_parser

    add_skeleton_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    command = args.command or "gui"
    if command in cli_setup.WORKER_COMMANDS and getattr(sys, "frozen", False):
        return cli_setup.run_in_worker(command, sys.argv[1:] if argv is None else list(argv))
    try:
        run = _commands().get(command)
        if run is not None:
            return run(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SaveError as exc:  # a full disk or a read-only folder, from any command that saves
        return fail(str(exc))
    except BrokenPipeError:
        return _reader_went_away()
    parser.error(f"unknown command {command!r}")
    return 2


def _commands() -> dict[str, Callable[[argparse.Namespace], int]]:
    """Each sub-command's function; the modules import torch only inside them."""
    from app.engine.skeleton_cli import cmd_skeleton

    return {
        "gui": _run_gui,
        "tiny-model": cli_render.cmd_tiny_model,
        "generate": cli_render.cmd_generate,
        "bake": cli_render.cmd_bake,
        "inspect": cli_adapters.cmd_inspect,
        "convert": cli_adapters.cmd_convert,
        "dataset": cli_dataset.cmd_dataset_check,
        "caption": cli_dataset.cmd_caption,
        "hub": cli_hub.cmd_hub,
        "library": cli_hub.cmd_library,
        "train": cli_train.cmd_train,
        "skeleton": cmd_skeleton,
        **dict.fromkeys(cli_setup.COMMANDS, cli_setup.run),
    }


def _run_gui(args: argparse.Namespace) -> int:
    from app.ui.app import run_gui

    return run_gui([sys.argv[0]], open_path=getattr(args, "file", None))


def _reader_went_away() -> int:
    """``loraloom ... | head``: the reader stopped listening, which is no error of ours. Point
    stdout at /dev/null so the interpreter's last flush does not complain either."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141  # what a shell reports for a program ended by SIGPIPE


if __name__ == "__main__":
    sys.exit(main())
