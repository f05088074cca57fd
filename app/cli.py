"""``loraloom``: the GUI with no arguments, and every job headless as a sub-command.

Heavy libraries (torch, diffusers) are imported inside the sub-commands that need
them, so ``loraloom --version`` and ``loraloom --help`` answer at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app import __version__, cli_setup
from app.core import families
from app.core.events import ArtifactKind, ArtifactSaved, ImageReady, JobEvent, LogLine, Phase, Progress
from app.core.families import Family
from app.core.files import SaveError


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"])


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
    gen.add_argument("--guidance", type=float, default=7.0)
    gen.add_argument("--size", default=None, help="WIDTHxHEIGHT, default 512x512 (1024x1024 SDXL, 64x64 tiny)")
    gen.add_argument("--scheduler", default=Scheduler.EULER.value, choices=[s.value for s in Scheduler])
    gen.add_argument("--out", type=Path, default=None, help="PNG to write (default: the outputs folder)")
    gen.add_argument("--lora", action="append", default=[], metavar="PATH[:WEIGHT[:TE_WEIGHT]]",
                     help="an adapter to mix in (repeatable); weight 1 by default, e.g. style.safetensors:0.8")
    _add_model_args(gen)

    bake = sub.add_parser("bake", help="bake a weighted mix of adapters into one kohya LoRA file")
    bake.add_argument("--base", required=True, help="the base model the adapters belong to")
    bake.add_argument("--lora", action="append", required=True, metavar="PATH[:WEIGHT[:TE_WEIGHT]]",
                      help="an adapter and its weight (repeatable), e.g. A.safetensors:0.8")
    bake.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    bake.add_argument("--rank", type=int, default=0,
                      help="reduce every layer to this rank by SVD (default: exact, rank = sum of ranks)")
    _add_model_args(bake)

    insp = sub.add_parser("inspect", help="print what an adapter file is, as JSON (no model needed)")
    insp.add_argument("file", type=Path)
    insp.add_argument("--base", help="also apply it to this base model and print the load report")
    _add_model_args(insp)

    conv = sub.add_parser("convert", help="rewrite an adapter file in another layout (kohya, diffusers, peft, comfy)")
    conv.add_argument("src", type=Path, metavar="IN")
    conv.add_argument("out", type=Path, metavar="OUT")
    conv.add_argument("--to", required=True, choices=["kohya", "diffusers", "peft", "comfy"])
    conv.add_argument("--base", required=True, help="the base model it is for (it tells the layer names apart)")

    dataset = sub.add_parser("dataset", help="dataset tools")
    dataset_sub = dataset.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    check = dataset_sub.add_parser("check", help="scan a dataset folder and report problems, repeats and tags")
    check.add_argument("dir", type=Path, help="the dataset folder (scanned recursively)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.add_argument("--min-side", type=int, default=256, help="short side below this is too small (default 256)")
    check.add_argument("--separator", default=", ", help="caption tag separator (default ', ')")
    check.add_argument("--deep", action="store_true", help="also decode every image (slower, finds damaged data)")

    cap = sub.add_parser("caption", help="auto-caption a dataset folder (BLIP, Florence-2 or a WD14 tagger)")
    cap.add_argument("dir", type=Path, help="the dataset folder")
    cap.add_argument("--model", default="", help="Hub id or local folder (default: Salesforce/blip-image-captioning-large)")
    cap.add_argument("--backend", default="auto", choices=["auto", "blip", "florence", "wd14"])
    cap.add_argument("--mode", default="fill", choices=["fill", "replace", "append"],
                     help="fill: only images without a caption (default); replace; append")
    cap.add_argument("--prefix", default="", help="put first in every new caption (e.g. the trigger word)")
    cap.add_argument("--suffix", default="", help="put last in every new caption")
    cap.add_argument("--batch-size", type=int, default=8)
    cap.add_argument("--separator", default=", ")
    cap.add_argument("--min-side", type=int, default=256, help="skip images whose short side is below this")
    cap.add_argument("--max-new-tokens", type=int, default=60, help="caption length limit (BLIP, Florence-2)")
    cap.add_argument("--beams", type=int, default=1, help="beam search width (BLIP, Florence-2)")
    cap.add_argument("--task", default="<DETAILED_CAPTION>", help="Florence-2 task prompt")
    cap.add_argument("--general-threshold", type=float, default=0.35, help="WD14 general tag threshold")
    cap.add_argument("--character-threshold", type=float, default=0.85, help="WD14 character tag threshold")
    cap.add_argument("--max-tags", type=int, default=0, help="WD14: keep at most N tags (0: no limit)")
    cap.add_argument("--exclude-tags", default="", help="WD14: comma-separated tags to leave out")
    cap.add_argument("--keep-underscores", action="store_true", help="WD14: keep underscores in tags")
    _add_model_args(cap)
    _add_hub_parsers(sub)
    _add_train_parser(sub)
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
        if command == "gui":
            from app.ui.app import run_gui

            return run_gui([sys.argv[0]], open_path=getattr(args, "file", None))
        if command == "tiny-model":
            return cmd_tiny_model(args)
        if command == "generate":
            return cmd_generate(args)
        if command == "bake":
            return cmd_bake(args)
        if command == "inspect":
            return cmd_inspect(args)
        if command == "convert":
            from app.cli_adapters import cmd_convert

            return cmd_convert(args)
        if command == "dataset":
            return cmd_dataset_check(args)
        if command == "caption":
            return cmd_caption(args)
        if command == "hub":
            return cmd_hub(args)
        if command == "library":
            return cmd_library(args)
        if command == "train":
            return cmd_train(args)
        if command in cli_setup.COMMANDS:
            return cli_setup.run(args)
        if command == "skeleton":
            from app.engine.skeleton_cli import cmd_skeleton

            return cmd_skeleton(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SaveError as exc:  # a full disk or a read-only folder, from any command that saves
        return _fail(str(exc))
    except BrokenPipeError:
        return _reader_went_away()
    parser.error(f"unknown command {command!r}")
    return 2


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


def _fail(message: str) -> int:
    print(f"loraloom: error: {message}", file=sys.stderr)
    return 1


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from app.engine.models import quiet_loading

    quiet_loading()  # before diffusers/transformers are imported: no torchvision notices
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
    if src.family is not None:
        spec = families.spec(src.family)
        return spec.default_steps, spec.default_size
    return 20, (512, 512)


def cmd_generate(args: argparse.Namespace) -> int:
    from app.core.configs import ConfigError, GenerateRequest, parse_lora_arg, parse_size

    steps, size = _defaults_for(args.base)
    try:
        adapters = [parse_lora_arg(text).to_dict() for text in args.lora]
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
                "adapters": adapters,
            },
            where="generate",
        )
    except ConfigError as exc:
        return _fail(str(exc))
    if args.out is not None and args.out.suffix.lower() != ".png":
        return _fail(f"{args.out}: the output must be a .png file")
    from app.core.adapters import AdapterError, inspect_adapter

    try:  # a missing or broken file fails before the model loads
        for entry in request.adapter_entries():
            inspect_adapter(entry.path)
    except AdapterError as exc:
        return _fail(str(exc))

    from tqdm import tqdm

    from app.engine.adapter_formats import IncompatibleAdapter
    from app.engine.models import ModelError
    from app.engine.rendering import Renderer

    renderer = Renderer()
    try:
        print(f"loading {request.base} ...", file=sys.stderr)
        renderer.ensure_model(request.model_spec())
        assert renderer.mixer is not None
        # A picture without an adapter the user asked for is silently wrong: refuse instead
        # (the GUI shows the reason on the row and renders the rest).
        renderer.mixer.load(request.adapter_entries(), strict=True)
        with tqdm(total=request.steps, unit="step", file=sys.stderr, desc="render") as bar:
            result = renderer.render(
                request, out_path=args.out, on_step=lambda step, total, eta: bar.update(step - bar.n)
            )
    except (ModelError, IncompatibleAdapter) as exc:
        return _fail(str(exc))
    for warning in result.mix.warnings if result.mix else []:
        print(f"loraloom: warning: {warning}", file=sys.stderr)
    print(result.path)
    print(f"seed {result.seed}, {result.seconds:.2f} s", file=sys.stderr)
    return 0


def cmd_bake(args: argparse.Namespace) -> int:
    from app.core.configs import BakeRequest, ConfigError, parse_lora_arg

    try:
        request = BakeRequest.from_dict(
            {"base": args.base, "adapters": [parse_lora_arg(text).to_dict() for text in args.lora],
             "out": str(args.out), "rank": args.rank, "device": args.device, "dtype": args.dtype},
            where="bake",
        )
    except ConfigError as exc:
        return _fail(str(exc))
    from app.core.adapters import AdapterError, inspect_adapter

    try:  # cheap header checks first: a broken file fails before the model loads
        for entry in request.adapter_entries():
            inspect_adapter(entry.path)
    except AdapterError as exc:
        return _fail(str(exc))

    from app.engine.adapter_formats import IncompatibleAdapter
    from app.engine.baking import BakeError, bake_mix
    from app.engine.models import ModelError
    from app.engine.rendering import Renderer

    renderer = Renderer()
    try:
        print(f"loading {request.base} ...", file=sys.stderr)
        renderer.ensure_model(request.model_spec())
        assert renderer.mixer is not None
        result = bake_mix(renderer.mixer, request.adapter_entries(), request.out,
                          rank=request.rank or None, base=request.base)
    except (ModelError, IncompatibleAdapter, BakeError) as exc:
        return _fail(str(exc))
    print(result.path)
    print(result.describe(), file=sys.stderr)
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from app.core.adapters import AdapterError, inspect_adapter

    if args.base:
        from app.cli_adapters import cmd_inspect_base

        return cmd_inspect_base(args)
    try:
        info = inspect_adapter(args.file)
    except AdapterError as exc:
        return _fail(str(exc))
    print(json.dumps(info.to_json(), indent=2, ensure_ascii=False))
    return 0


def cmd_dataset_check(args: argparse.Namespace) -> int:
    """Exit 0 when at least one image is usable, 1 when none is (or the folder is missing)."""
    import json

    from app.core.dataset.scan import DatasetError, scan_dataset
    from app.core.dataset.report import dataset_report, format_report

    try:
        ds = scan_dataset(args.dir, min_side=args.min_side, separator=args.separator, deep=args.deep)
    except DatasetError as exc:
        return _fail(str(exc))
    report = dataset_report(ds)
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    return 0 if report["usable"] else 1


def cmd_caption(args: argparse.Namespace) -> int:
    """Same engine code as the worker's caption job; a progress bar with ETA on stderr."""
    from app.core.dataset.caption_config import CaptionRequest
    from app.core.configs import ConfigError
    from app.core.dataset.scan import DatasetError

    try:
        request = CaptionRequest.from_dict(
            {
                "folder": str(args.dir), "model": args.model, "backend": args.backend, "mode": args.mode,
                "prefix": args.prefix, "suffix": args.suffix, "batch_size": args.batch_size,
                "separator": args.separator, "min_side": args.min_side, "max_new_tokens": args.max_new_tokens,
                "num_beams": args.beams, "florence_task": args.task, "general_threshold": args.general_threshold,
                "character_threshold": args.character_threshold, "max_tags": args.max_tags,
                "exclude_tags": args.exclude_tags, "underscores_to_spaces": not args.keep_underscores,
                "device": args.device, "dtype": args.dtype,
            },
            where="caption",
        )
    except ConfigError as exc:
        return _fail(str(exc))
    from tqdm import tqdm

    from app.engine.captioning import load_captioner, run_captioning
    from app.engine.models import ModelError

    from app.core.dataset.scan import check_folder

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

        summary = run_captioning(captioner, request, on_progress=on_progress,
                                 on_skip=lambda skip: (bar.write(skip.reason, file=sys.stderr) if bar
                                                       else print(skip.reason, file=sys.stderr)))
    except (ModelError, DatasetError) as exc:
        return _fail(str(exc))
    finally:
        if bar is not None:
            bar.close()
    print(summary.line())
    return 0 if summary.written or not summary.targets else 1


def _add_hub_parsers(sub) -> None:
    """``hub search``, ``hub download`` and ``library list|add`` (the Library tab, headless)."""
    hub = sub.add_parser("hub", help="search and download LoRAs on the Hugging Face Hub")
    hub_sub = hub.add_subparsers(dest="hub_command", metavar="ACTION", required=True)
    search = hub_sub.add_parser("search", help="search LoRA repos (tag 'lora') on the Hub")
    search.add_argument("query", nargs="?", default="", help="free text matched against repo names")
    search.add_argument("--base", default="", help="sd1, sd2, sdxl, or a base model repo id")
    search.add_argument("--sort", default="downloads", choices=["downloads", "likes", "trending", "updated"])
    search.add_argument("--limit", type=int, default=20, help="how many repos (default 20)")
    search.add_argument("--json", action="store_true", help="print the results as JSON")
    down = hub_sub.add_parser("download", help="download an adapter into the Hugging Face cache and the library")
    down.add_argument("repo", help="repo id, e.g. owner/some-lora")
    down.add_argument("--file", default="", help="the .safetensors file (needed when the repo has several)")
    down.add_argument("--revision", default="main", help="branch, tag or commit (default main)")

    library = sub.add_parser("library", help="the local adapter library")
    library_sub = library.add_subparsers(dest="library_command", metavar="ACTION", required=True)
    listing = library_sub.add_parser("list", help="list the adapters on this machine")
    listing.add_argument("--json", action="store_true", help="print the entries as JSON")
    listing.add_argument("--search", default="", help="only entries matching these words")
    listing.add_argument("--base", default="", choices=[""] + [f.value for f in Family],
                         help="only this family (adapters of unknown family are kept)")
    add = library_sub.add_parser("add", help="add a folder of adapters (e.g. A1111's models/Lora)")
    add.add_argument("folder", type=Path)


def cmd_hub(args: argparse.Namespace) -> int:
    import json

    from app.core.families import Family
    from app.core.hub.client import Hub
    from app.core.hub.errors import HubError
    from app.core.hub.models import HubSort, SearchQuery

    hub = Hub()
    if args.hub_command == "search":
        if not 1 <= args.limit <= 1000:
            return _fail(f"--limit {args.limit} must be between 1 and 1000")
        family = Family(args.base) if args.base in {f.value for f in Family} else None
        if args.base and family is None and "/" not in args.base:
            return _fail(f"--base {args.base!r} must be sd1, sd2, sdxl or a base model repo id (owner/name)")
        query = SearchQuery(text=args.query, family=family, base_id="" if family or not args.base else args.base,
                            sort=HubSort(args.sort), limit=min(args.limit, 100))
        try:
            page = hub.search(query)
            repos = page.repos
            while page.next_url and len(repos) < args.limit:
                page = hub.more(page.next_url)
                repos += page.repos
        except HubError as exc:
            return _fail(str(exc))
        repos = repos[: args.limit]
        if args.json:
            print(json.dumps([r.to_json() for r in repos], indent=2, ensure_ascii=False))
            return 0
        for r in repos:
            family_text = r.family.value if r.family else "?"
            words = f"  [{', '.join(r.trigger_words)}]" if r.trigger_words else ""
            gated = "  (gated)" if r.gated else ""
            print(f"{r.repo_id:<48} {family_text:<5} {r.downloads:>9} dl {r.likes:>6} likes{gated}{words}")
        if not repos:
            print("no LoRA repos found", file=sys.stderr)
        return 0
    return _hub_download(hub, args)


def _hub_download(hub, args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from app.core.hub.errors import HubError, HubErrorKind
    from app.core.hub.models import HubRepo
    from app.core.library import Library

    try:
        repo = hub.details(args.repo, revision=None if args.revision == "main" else args.revision)
    except HubError as exc:
        if exc.kind is not HubErrorKind.OFFLINE or not args.file:
            return _fail(str(exc))
        repo = HubRepo(args.repo)  # offline: the cached copy may still be there
    names = [f.name for f in repo.adapter_files]
    filename = args.file or (names[0] if len(names) == 1 else "")
    if not filename:
        if not names:
            return _fail(f"{args.repo}: no .safetensors adapter in this repo")
        return _fail(f"{args.repo} has {len(names)} adapters, choose one with --file: {', '.join(names)}")
    listed = next((f for f in repo.files if f.name == filename), None)
    if repo.files and listed is None:
        return _fail(f"{args.repo}/{filename}: no such file in the repo (adapters: {', '.join(names) or 'none'})")
    sha256 = listed.sha256 if listed else None
    refused = hub.not_an_adapter(args.repo, filename, revision=args.revision)
    if refused:
        return _fail(refused)
    bar = None

    def on_progress(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:  # only once bytes flow: errors stay one line
            bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                       desc=filename[-40:])
        bar.update(done - bar.n)

    try:
        path = hub.download(args.repo, filename, revision=args.revision, expected_sha256=sha256,
                            on_progress=on_progress)
    except HubError as exc:
        return _fail(str(exc))
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume the download", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    entry = Library().record_download(path, repo_id=args.repo, trigger_words=repo.trigger_words,
                                      family=repo.family, license=repo.license, sha256=sha256)
    if entry.problem:  # downloaded and verified, but not an adapter we can use
        return _fail(entry.problem)
    print(path)
    if repo.trigger_words:
        print(f"trigger words: {', '.join(repo.trigger_words)}", file=sys.stderr)
    return 0


def cmd_library(args: argparse.Namespace) -> int:
    import json

    from app.core.library import Library

    library = Library()
    if args.library_command == "add":
        try:
            folder = library.add_folder(args.folder)
        except ValueError as exc:
            return _fail(str(exc))
        report = library.refresh()
        mine = [e for e in report.entries if Path(e.path).is_relative_to(folder)]
        bad = [e for e in mine if e.problem]
        print(f"{folder}: {len(mine)} adapter files" + (f", {len(bad)} cannot be used:" if bad else ""))
        for e in bad:  # listed, never a reason to fail the whole folder
            print(f"  {e.problem}")
        return 0
    library.refresh()
    entries = library.search(args.search, Family(args.base) if args.base else None)
    if args.json:
        print(json.dumps([e.to_json() for e in entries], indent=2, ensure_ascii=False))
        return 0
    for e in entries:
        family = e.family.value if e.family else "?"
        rank = f"r{e.rank}" if e.rank else ""
        words = f"  [{', '.join(e.trigger_words)}]" if e.trigger_words else ""
        problem = f"  PROBLEM: {e.problem}" if e.problem else ""
        print(f"{family:<5} {rank:<5} {e.source.value:<6} {e.title}  {e.path}{words}{problem}")
    if not entries:
        print("the library is empty: add a folder with 'loraloom library add FOLDER'", file=sys.stderr)
    return 0


def _add_train_parser(sub) -> None:
    train = sub.add_parser("train", help="train a LoRA from a TOML config (presets in resources/presets/)")
    train.add_argument("config", type=Path, nargs="?", default=None,
                       help="the run's settings; may start with preset = \"sd15-character\" and override it")
    train.add_argument("--resume", type=Path, default=None, metavar="RUN_DIR",
                       help="continue a stopped run exactly where it stopped (CONFIG may add steps)")


class _TrainBars:
    """The train command's view of the run's events: a bar while latents are cached, one for the
    steps, every sentence on a line of its own above them."""

    def __init__(self) -> None:
        self.bars: dict[str, Any] = {}

    def bar(self, name: str, total: int, initial: int = 0):
        from tqdm import tqdm

        if name not in self.bars:
            self.bars[name] = tqdm(total=total, initial=initial, unit="step" if name == "train" else "img",
                                   file=sys.stderr, desc=name, dynamic_ncols=True)
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
        return _fail("give a config file (loraloom train CONFIG.toml) or a run to resume (--resume RUN_DIR)")
    try:
        config = TrainConfig.load_toml(args.config) if args.config is not None else None
    except ConfigError as exc:
        return _fail(str(exc))

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
        return _fail(failure)
    if result.status == "cancelled":
        if result.step:
            print(f"stopped at step {result.step}; resume with: loraloom train --resume {result.run_dir}",
                  file=sys.stderr)
        else:
            print("stopped before the first step; nothing to resume", file=sys.stderr)
        return 130
    if result.skipped:
        print(f"{len(result.skipped)} picture(s) skipped (listed above and in {result.run_dir / 'log.jsonl'})",
              file=sys.stderr)
    if result.final is not None:
        print(result.final)
    return 0


if __name__ == "__main__":
    sys.exit(main())
