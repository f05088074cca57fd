"""``loraloom inspect FILE [--base MODEL]`` and ``loraloom convert``: the adapter-file commands.

Kept out of :mod:`app.cli` so that module stays argparse wiring; every failure is one
sentence naming the file (``loraloom: error: …``), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from app.cli_common import fail


def cmd_inspect(args: argparse.Namespace) -> int:
    """What an adapter file is, as JSON, from its header alone (with ``--base``: also its load report;
    with ``--blocks``: its ‖ΔW‖ per block)."""
    from app.core.adapters import AdapterError, inspect_adapter

    if args.base:
        return cmd_inspect_base(args)
    try:
        info = inspect_adapter(args.file)
    except AdapterError as exc:
        return fail(str(exc))
    out = info.to_json()
    if args.blocks:
        from app.engine.adapter_formats import IncompatibleAdapter
        from app.engine.block_mix import file_block_norms

        try:
            norms, needs_base = file_block_norms(args.file, info)
        except IncompatibleAdapter as exc:
            return fail(str(exc))
        out["block_norms"] = _rounded(norms)
        if needs_base:
            out["block_norms_need_base"] = needs_base  # DoRA, OFT …: measured with --base
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def _rounded(norms: dict[str, float]) -> dict[str, float]:
    return {block: round(norm, 6) for block, norm in norms.items()}


def cmd_inspect_base(args: argparse.Namespace) -> int:
    """The header description plus the load report against ``args.base``, as JSON."""
    from app.core.adapters import AdapterError, inspect_adapter
    from app.core.configs import ConfigError, ModelSpec

    try:
        info = inspect_adapter(args.file)
        spec = ModelSpec.from_dict({"base": args.base, "device": args.device, "dtype": args.dtype}, where="inspect")
    except (AdapterError, ConfigError) as exc:
        return fail(str(exc))
    from app.engine.adapter_formats import IncompatibleAdapter, LayerIndex, read_adapter
    from app.engine.models import ModelError, load_model

    try:
        print(f"loading {args.base} ...", file=sys.stderr)
        loaded = load_model(spec)
        parsed = read_adapter(args.file, LayerIndex(loaded.pipe), loaded.family)
    except (ModelError, IncompatibleAdapter) as exc:
        return fail(str(exc))
    out = info.to_json()
    out["load_report"] = parsed.report.to_json() if parsed.report else None
    out["warnings"] = parsed.warnings
    if args.blocks:
        from app.engine.block_mix import block_names, block_norms

        index = LayerIndex(loaded.pipe)
        w0 = {t: m.weight.detach() for t, m in index.modules.items()}
        out["block_norms"] = _rounded(
            block_norms(parsed.layers, block_names(index, parsed.layers, loaded.family), w0.__getitem__, loaded.family)
        )
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0


def add_convert_parser(sub) -> None:
    conv = sub.add_parser("convert", help="rewrite an adapter file in another layout (kohya, diffusers, peft, comfy)")
    conv.add_argument("src", type=Path, metavar="IN")
    conv.add_argument("out", type=Path, metavar="OUT")
    conv.add_argument("--to", required=True, choices=["kohya", "diffusers", "peft", "comfy"])
    conv.add_argument("--base", required=True, help="the base model it is for (it tells the layer names apart)")
    conv.add_argument(
        "--dora-axis",
        choices=["in", "out"],
        help="DoRA magnitudes per input column (kohya/comfy default: A1111 and ComfyUI read it alike) "
        "or per output row (peft's, the diffusers/peft default)",
    )


def cmd_convert(args: argparse.Namespace) -> int:
    """Rewrite ``args.src`` in the ``args.to`` layout; the base model tells the module names apart."""
    from app.core.adapters import AdapterError, inspect_adapter
    from app.core.configs import ConfigError, ModelSpec

    try:
        inspect_adapter(args.src)  # a broken file fails before the model loads
        spec = ModelSpec.from_dict({"base": args.base, "device": "cpu", "dtype": "fp32"}, where="convert")
    except (AdapterError, ConfigError) as exc:
        return fail(str(exc))
    from app.engine.adapter_convert import convert
    from app.engine.adapter_formats import IncompatibleAdapter, LayerIndex
    from app.engine.models import ModelError, load_model

    try:
        print(f"loading {args.base} ...", file=sys.stderr)
        loaded = load_model(spec)
        notes: list[str] = []
        out = convert(
            args.src, args.out, args.to, LayerIndex(loaded.pipe), loaded.family, dora_axis=args.dora_axis, notes=notes
        )
    except (ModelError, IncompatibleAdapter) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"{args.out}: cannot be written ({exc.strerror or exc})")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(out)
    return 0
