"""``loraloom inspect FILE --base MODEL`` and ``loraloom convert``: adapter-file commands that need torch.

Kept out of :mod:`app.cli` so that module stays argparse wiring; every failure is one
sentence naming the file (``loraloom: error: …``), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys


def _fail(message: str) -> int:
    print(f"loraloom: error: {message}", file=sys.stderr)
    return 1


def cmd_inspect_base(args: argparse.Namespace) -> int:
    """The header description plus the load report against ``args.base``, as JSON."""
    from app.core.adapters import AdapterError, inspect_adapter
    from app.core.configs import ConfigError, ModelSpec

    try:
        info = inspect_adapter(args.file)
        spec = ModelSpec.from_dict({"base": args.base, "device": args.device, "dtype": args.dtype},
                                   where="inspect")
    except (AdapterError, ConfigError) as exc:
        return _fail(str(exc))
    from app.engine.adapter_formats import IncompatibleAdapter, LayerIndex, read_adapter
    from app.engine.models import ModelError, load_model

    try:
        print(f"loading {args.base} ...", file=sys.stderr)
        loaded = load_model(spec)
        parsed = read_adapter(args.file, LayerIndex(loaded.pipe), loaded.family)
    except (ModelError, IncompatibleAdapter) as exc:
        return _fail(str(exc))
    out = info.to_json()
    out["load_report"] = parsed.report.to_json() if parsed.report else None
    out["warnings"] = parsed.warnings
    print(json.dumps(out, indent=2, ensure_ascii=False))
    return 0
