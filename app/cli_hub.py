"""``loraloom hub search|download`` and ``library list|add``: the Library tab, headless."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app.cli_common import fail
from app.core.families import Family


def add_parsers(sub) -> None:
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
    listing.add_argument(
        "--base",
        default="",
        choices=[""] + [f.value for f in Family],
        help="only this family (adapters of unknown family are kept)",
    )
    add = library_sub.add_parser("add", help="add a folder of adapters (e.g. A1111's models/Lora)")
    add.add_argument("folder", type=Path)


def cmd_hub(args: argparse.Namespace) -> int:
    import json

    from app.core.hub.client import Hub
    from app.core.hub.errors import HubError
    from app.core.hub.models import HubSort, SearchQuery

    hub = Hub()
    if args.hub_command == "search":
        if not 1 <= args.limit <= 1000:
            return fail(f"--limit {args.limit} must be between 1 and 1000")
        family = Family(args.base) if args.base in {f.value for f in Family} else None
        if args.base and family is None and "/" not in args.base:
            return fail(f"--base {args.base!r} must be sd1, sd2, sdxl or a base model repo id (owner/name)")
        query = SearchQuery(
            text=args.query,
            family=family,
            base_id="" if family or not args.base else args.base,
            sort=HubSort(args.sort),
            limit=min(args.limit, 100),
        )
        try:
            page = hub.search(query)
            repos = page.repos
            while page.next_url and len(repos) < args.limit:
                page = hub.more(page.next_url)
                repos += page.repos
        except HubError as exc:
            return fail(str(exc))
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
            return fail(str(exc))
        repo = HubRepo(args.repo)  # offline: the cached copy may still be there
    names = [f.name for f in repo.adapter_files]
    filename = args.file or (names[0] if len(names) == 1 else "")
    if not filename:
        if not names:
            return fail(f"{args.repo}: no .safetensors adapter in this repo")
        return fail(f"{args.repo} has {len(names)} adapters, choose one with --file: {', '.join(names)}")
    listed = next((f for f in repo.files if f.name == filename), None)
    if repo.files and listed is None:
        return fail(f"{args.repo}/{filename}: no such file in the repo (adapters: {', '.join(names) or 'none'})")
    sha256 = listed.sha256 if listed else None
    refused = hub.not_an_adapter(args.repo, filename, revision=args.revision)
    if refused:
        return fail(refused)
    bar = None

    def on_progress(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:  # only once bytes flow: errors stay one line
            bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr, desc=filename[-40:])
        bar.update(done - bar.n)

    try:
        path = hub.download(
            args.repo, filename, revision=args.revision, expected_sha256=sha256, on_progress=on_progress
        )
    except HubError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print("\ninterrupted; run the same command again to resume the download", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    entry = Library().record_download(
        path,
        repo_id=args.repo,
        trigger_words=repo.trigger_words,
        family=repo.family,
        license=repo.license,
        sha256=sha256,
    )
    if entry.problem:  # downloaded and verified, but not an adapter we can use
        return fail(entry.problem)
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
            return fail(str(exc))
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
