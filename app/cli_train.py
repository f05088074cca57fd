"""``loraloom train``: the Train tab, headless, on the same engine as the worker's train job."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli_common import fail
from app.core.events import ArtifactKind, ArtifactSaved, ImageReady, JobEvent, LogLine, Phase, Progress
from app.core.files import SaveError

if TYPE_CHECKING:
    from app.engine.training import TrainResult


def add_parser(sub) -> None:
    train = sub.add_parser("train", help="train a LoRA from a TOML config (presets in resources/presets/)")
    train.add_argument(
        "config",
        type=Path,
        nargs="?",
        default=None,
        help='the run\'s settings; may start with preset = "sd15-character" and override it',
    )
    train.add_argument(
        "--resume",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="continue a stopped run exactly where it stopped (CONFIG may add steps)",
    )


class _TrainBars:
    """The train command's view of the run's events: a bar while latents are cached, one for the
    steps, every sentence on a line of its own above them."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def bar(self, name: str, total: int, initial: int = 0):
        from tqdm import tqdm

        if name not in self.bars:
            self.bars[name] = tqdm(
                total=total,
                initial=initial,
                unit="step" if name == "train" else "img",
                file=sys.stderr,
                desc=name,
                dynamic_ncols=True,
            )
        return self.bars[name]

    def say(self, line: str) -> None:
        (self.bars["train"].write if "train" in self.bars else print)(line, file=sys.stderr)

    def on_event(self, event: JobEvent) -> None:
        if isinstance(event, Progress) and event.phase is Phase.TRAINING:
            b = self.bar("train", event.total, event.step - 1)
            b.update(event.step - b.n)
            b.set_postfix(loss=f"{event.loss:.4f}", lr=f"{event.lr:.2e}", refresh=False)
        elif isinstance(event, Progress) and event.phase is Phase.CACHING:
            b = self.bar("cache", event.total)
            b.update(event.step - b.n)
            if event.step >= event.total:
                self.bars.pop("cache").close()
        elif isinstance(event, ArtifactSaved) and event.kind is ArtifactKind.RUN:
            print(f"run folder: {event.path}", file=sys.stderr)
        elif isinstance(event, (ArtifactSaved, ImageReady)):
            self.say(f"saved {event.path}")
        elif isinstance(event, LogLine):
            self.say(event.message)

    def close(self) -> None:
        for b in self.bars.values():
            b.close()


def cmd_train(args: argparse.Namespace) -> int:
    """Same engine as the worker's train job. Ctrl+C once: finish the step, save, stop (resumable)."""
    import signal

    from app.core.configs import ConfigError
    from app.core.train_config import TrainConfig

    if args.config is None and args.resume is None:
        return fail("give a config file (loraloom train CONFIG.toml) or a run to resume (--resume RUN_DIR)")
    try:
        config = TrainConfig.load_toml(args.config) if args.config is not None else None
    except ConfigError as exc:
        return fail(str(exc))

    from app.core.dataset.scan import DatasetError
    from app.engine.models import ModelError
    from app.engine.training import TrainError, train

    stop = {"asked": False}

    def on_sigint(signum, frame) -> None:
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True
        print("\nstopping after this step and saving (Ctrl+C again aborts without saving) ...", file=sys.stderr)

    bars = _TrainBars()

    previous = signal.signal(signal.SIGINT, on_sigint)
    failure = None
    try:
        result = train(config, resume=args.resume, on_event=bars.on_event, should_stop=lambda: stop["asked"])
    except (ConfigError, ModelError, TrainError, DatasetError, SaveError) as exc:
        failure = str(exc)
    finally:
        signal.signal(signal.SIGINT, previous)
        bars.close()
    if failure is not None:  # after the bars are closed, so the sentence has a line of its own
        return fail(failure)
    return _report(result)


def _report(result: TrainResult) -> int:
    """The run's last lines on the terminal, and the exit status: 130 when stopped, else 0."""
    if result.status == "cancelled":
        if result.step:
            print(
                f"stopped at step {result.step}; resume with: loraloom train --resume {result.run_dir}", file=sys.stderr
            )
        else:
            print("stopped before the first step; nothing to resume", file=sys.stderr)
        return 130
    if result.skipped:
        print(
            f"{len(result.skipped)} picture(s) skipped (listed above and in {result.run_dir / 'log.jsonl'})",
            file=sys.stderr,
        )
    if result.best is not None:
        step, path = result.best
        print(
            f"best by validation loss: {path} (step {step}, validation loss {result.val_losses[step]:.4f})",
            file=sys.stderr,
        )
    if result.final is not None:
        print(result.final)
    return 0
