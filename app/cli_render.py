"""``loraloom tiny-model``, ``generate`` and ``bake``: the commands that load a base model and render or bake."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli_common import fail
from app.core import families

if TYPE_CHECKING:  # torch-free start: the CLI imports the engine inside the commands
    from app.core.configs import AdapterEntry, BakeRequest, GenerateRequest
    from app.engine.rendering import Renderer


def cmd_tiny_model(args: argparse.Namespace) -> int:
    from app.engine.models import quiet_loading

    quiet_loading()  # before diffusers/transformers are imported: no torchvision notices
    from app.engine.tiny import write_tiny_model

    try:
        out = write_tiny_model(args.dir, family=args.family, seed=args.seed, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as exc:
        return fail(str(exc))
    print(out)
    return 0


def _defaults_for(base: str) -> tuple[int, tuple[int, int], float, str]:
    """Steps, size, guidance and sampler when not given: the family's, or its distilled model's
    (Flux.1 [schnell]: 4 steps); tiny test models: 4 steps, 64 px."""
    from app.engine.models import ModelError, check_source, source_distilled

    try:
        src = check_source(base)
    except ModelError:
        src = None
    spec = families.spec(src.family if src is not None and src.family is not None else families.FALLBACK)
    steps, guidance = spec.render_defaults(distilled=src is not None and source_distilled(src))
    size = spec.default_size
    if src is not None and src.kind == "folder":
        from app.engine.tiny import INFO_FILE

        if (Path(src.text) / INFO_FILE).is_file():
            steps, size = 4, (64, 64)
    return steps, size, guidance, spec.default_scheduler


def _family_problem(request: GenerateRequest) -> str | None:
    """What the base model's family refuses, told before it loads: a sampler it has no form of,
    an adapter made for another family (a negative prompt Flux has no use for: a warning)."""
    from app.core.adapters import inspect_adapter
    from app.engine.models import ModelError, check_source

    try:
        family = check_source(request.base).family
    except ModelError:
        return None  # the load says what is wrong with the base
    if family is None:  # a Hub id: known once loaded
        return None
    spec = families.spec(family)
    if problem := spec.scheduler_problem(request.scheduler.value):
        return problem
    if request.negative and spec.guidance_distilled:
        print(f"loraloom: warning: {spec.label} takes no negative prompt; it is left out", file=sys.stderr)
    return next(
        filter(None, (inspect_adapter(e.path).family_mismatch(family) for e in request.adapter_entries())), None
    )


def _first_bad_adapter(entries: list[AdapterEntry]) -> str | None:
    """Cheap header checks first: a missing or broken adapter file fails before the model loads."""
    from app.core.adapters import AdapterError, inspect_adapter

    try:
        for entry in entries:
            inspect_adapter(entry.path)
    except AdapterError as exc:
        return str(exc)
    return None


def _loaded_renderer(request: GenerateRequest | BakeRequest) -> Renderer:
    """A renderer holding the request's base model (raises ModelError)."""
    from app.engine.rendering import Renderer

    renderer = Renderer()
    print(f"loading {request.base} ...", file=sys.stderr)
    renderer.ensure_model(request.model_spec())
    assert renderer.mixer is not None
    return renderer


def cmd_generate(args: argparse.Namespace) -> int:
    from app.cli_common import base_with_companions
    from app.core.configs import ConfigError, GenerateRequest, parse_lora_arg, parse_size
    from app.core.model_choice import ModelChoiceError

    try:
        args.base = base_with_companions(args)
    except ModelChoiceError as exc:
        return fail(str(exc))
    steps, size, guidance, scheduler = _defaults_for(args.base)
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
                "guidance": args.guidance if args.guidance is not None else guidance,
                "width": width,
                "height": height,
                "scheduler": args.scheduler or scheduler,
                "device": args.device,
                "dtype": args.dtype,
                "adapters": adapters,
            },
            where="generate",
        )
    except ConfigError as exc:
        return fail(str(exc))
    if args.out is not None and args.out.suffix.lower() != ".png":
        return fail(f"{args.out}: the output must be a .png file")
    if problem := _first_bad_adapter(request.adapter_entries()) or _family_problem(request):
        return fail(problem)

    from tqdm import tqdm

    from app.engine.adapter_formats import IncompatibleAdapter
    from app.engine.models import ModelError

    try:
        renderer = _loaded_renderer(request)
        # A picture without an adapter the user asked for is silently wrong: refuse instead
        # (the GUI shows the reason on the row and renders the rest).
        renderer.mixer.load(request.adapter_entries(), strict=True)
        with tqdm(total=request.steps, unit="step", file=sys.stderr, desc="render") as bar:
            result = renderer.render(
                request, out_path=args.out, on_step=lambda step, total, eta: bar.update(step - bar.n)
            )
    except (ModelError, IncompatibleAdapter) as exc:
        return fail(str(exc))
    for warning in result.mix.warnings if result.mix else []:
        print(f"loraloom: warning: {warning}", file=sys.stderr)
    print(result.path)
    print(f"seed {result.seed}, {result.seconds:.2f} s", file=sys.stderr)
    return 0


def cmd_bake(args: argparse.Namespace) -> int:
    from app.cli_common import base_with_companions
    from app.core.configs import BakeRequest, ConfigError, parse_lora_arg
    from app.core.model_choice import ModelChoiceError

    try:
        args.base = base_with_companions(args)
    except ModelChoiceError as exc:
        return fail(str(exc))

    try:
        request = BakeRequest.from_dict(
            {
                "base": args.base,
                "adapters": [parse_lora_arg(text).to_dict() for text in args.lora],
                "out": str(args.out),
                "rank": args.rank,
                "device": args.device,
                "dtype": args.dtype,
            },
            where="bake",
        )
    except ConfigError as exc:
        return fail(str(exc))
    if problem := _first_bad_adapter(request.adapter_entries()):
        return fail(problem)

    from app.engine.adapter_formats import IncompatibleAdapter
    from app.engine.baking import BakeError, bake_mix
    from app.engine.models import ModelError

    try:
        renderer = _loaded_renderer(request)
        result = bake_mix(
            renderer.mixer, request.adapter_entries(), request.out, rank=request.rank or None, base=request.base
        )
    except (ModelError, IncompatibleAdapter, BakeError) as exc:
        return fail(str(exc))
    print(result.path)
    print(result.describe(), file=sys.stderr)
    return 0
