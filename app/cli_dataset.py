"""``loraloom dataset check`` and ``loraloom caption``: the Dataset tab, headless."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli_common import add_model_args, fail


def add_parsers(sub) -> None:
    """``dataset check`` and ``caption``."""
    from app.core.dataset.caption_config import (
        BACKEND_LABELS,
        DEFAULT_VLM_PROMPT,
        FLORENCE_TASKS,
        CaptionBackend,
        CaptionMode,
    )

    backends = "; ".join(f"{backend.value}: {label}" for backend, label in BACKEND_LABELS.items())
    dataset = sub.add_parser("dataset", help="dataset tools")
    dataset_sub = dataset.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    check = dataset_sub.add_parser("check", help="scan a dataset folder and report problems, repeats and tags")
    check.add_argument("dir", type=Path, help="the dataset folder (scanned recursively)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--min-side", type=int, default=256, help="short side below this is too small (default 256)")
    check.add_argument("--separator", default=", ", help="caption tag separator (default ', ')")
    check.add_argument("--deep", action="store_true", help="also decode every image (slower, finds damaged data)")

    cap = sub.add_parser("caption", help="auto-caption a dataset folder (BLIP, Florence-2, a WD tagger or a VLM)")
    cap.add_argument("dir", type=Path, help="the dataset folder")
    cap.add_argument(
        "--model", default="", help="Hub id or local folder (default: Salesforce/blip-image-captioning-large)"
    )
    cap.add_argument(
        "--backend",
        default="auto",
        choices=[b.value for b in CaptionBackend],
        help=f"{backends}; auto (default): from the model id or folder",
    )
    cap.add_argument(
        "--mode",
        default="fill",
        choices=[m.value for m in CaptionMode],
        help="fill: only images without a caption (default); replace; append",
    )
    cap.add_argument("--prefix", default="", help="put first in every new caption (e.g. the trigger word)")
    cap.add_argument("--suffix", default="", help="put last in every new caption")
    cap.add_argument("--batch-size", type=int, default=8)
    cap.add_argument("--separator", default=", ")
    cap.add_argument("--min-side", type=int, default=256, help="skip images whose short side is below this")
    cap.add_argument("--max-new-tokens", type=int, default=60, help="caption length limit (BLIP, Florence-2, VLM)")
    cap.add_argument("--beams", type=int, default=1, help="beam search width (BLIP, Florence-2, VLM)")
    tasks = "; ".join(f"{task}: {meaning}" for task, meaning in FLORENCE_TASKS.items())
    cap.add_argument(
        "--task",
        default="<DETAILED_CAPTION>",
        choices=list(FLORENCE_TASKS),
        metavar="TASK",
        help=f"Florence-2 task prompt: {tasks}",
    )
    cap.add_argument(
        "--prompt",
        default=DEFAULT_VLM_PROMPT,
        help="VLM prompt template: {tags} is the image's caption now, {trigger} the --prefix",
    )
    cap.add_argument("--discouraged", default="", help="VLM: comma-separated words the model must not write")
    cap.add_argument("--4bit", dest="four_bit", action="store_true", help="VLM: 4-bit weights (bitsandbytes, CUDA)")
    cap.add_argument("--general-threshold", type=float, default=0.35, help="WD14 general tag threshold")
    cap.add_argument("--character-threshold", type=float, default=0.85, help="WD14 character tag threshold")
    cap.add_argument("--max-tags", type=int, default=0, help="WD14: keep at most N tags (0: no limit)")
    cap.add_argument("--exclude-tags", default="", help="WD14: comma-separated tags to leave out")
    cap.add_argument("--keep-underscores", action="store_true", help="WD14: keep underscores in tags")
    add_model_args(cap)


def cmd_dataset_check(args: argparse.Namespace) -> int:
    """Exit 0 when at least one image is usable, 1 when none is (or the folder is missing)."""
    import json

    from app.core.dataset.report import dataset_report, format_report
    from app.core.dataset.scan import DatasetError, scan_dataset

    try:
        ds = scan_dataset(args.dir, min_side=args.min_side, separator=args.separator, deep=args.deep)
    except DatasetError as exc:
        return fail(str(exc))
    report = dataset_report(ds)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0 if report["usable"] else 1


def cmd_caption(args: argparse.Namespace) -> int:
    """Same engine code as the worker's caption job; a progress bar with ETA on stderr."""
    from app.core.configs import ConfigError
    from app.core.dataset.caption_config import CaptionRequest
    from app.core.dataset.scan import DatasetError

    try:
        request = CaptionRequest.from_dict(
            {
                "folder": str(args.dir),
                "model": args.model,
                "backend": args.backend,
                "mode": args.mode,
                "prefix": args.prefix,
                "suffix": args.suffix,
                "batch_size": args.batch_size,
                "separator": args.separator,
                "min_side": args.min_side,
                "max_new_tokens": args.max_new_tokens,
                "num_beams": args.beams,
                "florence_task": args.task,
                "vlm_prompt": args.prompt,
                "discouraged_words": args.discouraged,
                "load_in_4bit": args.four_bit,
                "general_threshold": args.general_threshold,
                "character_threshold": args.character_threshold,
                "max_tags": args.max_tags,
                "exclude_tags": args.exclude_tags,
                "underscores_to_spaces": not args.keep_underscores,
                "device": args.device,
                "dtype": args.dtype,
            },
            where="caption",
        )
    except ConfigError as exc:
        return fail(str(exc))
    from tqdm import tqdm

    from app.core.dataset.scan import check_folder
    from app.engine.captioning import load_captioner, run_captioning
    from app.engine.models import ModelError

    bar = None
    try:
        check_folder(request.folder)  # a typo in the folder fails before a model loads for minutes
        print(f"loading {request.model or 'the default captioner'} ...", file=sys.stderr)
        captioner = load_captioner(request)

        def on_progress(done: int, total: int, eta, message: str) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(total=total, unit="img", file=sys.stderr, desc="caption")
            bar.update(done - bar.n)

        summary = run_captioning(
            captioner,
            request,
            on_progress=on_progress,
            on_skip=lambda skip: (
                bar.write(skip.reason, file=sys.stderr) if bar else print(skip.reason, file=sys.stderr)
            ),
        )
    except (ModelError, DatasetError) as exc:
        return fail(str(exc))
    finally:
        if bar is not None:
            bar.close()
    print(summary.line())
    return 0 if summary.written or not summary.targets else 1
