"""Opening a big adapter folder again: the library index versus reading every header.

A1111 users keep hundreds or thousands of LoRAs in ``models/Lora``. The first look reads
each file's safetensors header; every later look only stats the files and takes the rest
from the index (path + size + mtime). This prints both times for N generated LoRA files
and their ratio.

    .venv/bin/python bench/library_index.py [--files 1000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.library import Library  # noqa: E402


def write_lora(path: Path, i: int, modules: int = 64) -> None:
    """A kohya SD1 LoRA header with ``modules`` layers (real files have 100–700) and tiny tensors."""
    header, offset = {}, 0
    for m in range(modules):
        name = f"lora_unet_down_blocks_{m % 4}_attentions_{m % 2}_transformer_blocks_{m}_attn2_to_k"
        for suffix, shape in ((".lora_down.weight", [4, 768]), (".lora_up.weight", [320, 4]), (".alpha", [])):
            header[name + suffix] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + 2]}
            offset += 2
    header["__metadata__"] = {
        "ss_base_model_version": "sd_v1",
        "ss_output_name": f"lora{i}",
        "ss_tag_frequency": json.dumps({"5_x": {f"tag{t}": t for t in range(40)}}),
    }
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * offset)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="loraloom-bench-"))
    try:
        folder = root / "Lora"
        folder.mkdir()
        for i in range(args.files):
            write_lora(folder / f"lora{i:05d}.safetensors", i)
        first, again = [], []
        for run in range(args.runs):
            kw = dict(
                settings_path=root / f"s{run}.toml",
                index_path=root / f"index{run}.json",
                records_path=root / "records.json",
                runs_dir=root / "runs",
                hub_cache=root / "hf",
            )
            lib = Library(**kw)
            lib.add_folder(folder)
            t = time.perf_counter()
            report = lib.refresh()
            first.append(time.perf_counter() - t)
            assert report.inspected == args.files
            t = time.perf_counter()
            report = Library(**kw).refresh()
            again.append(time.perf_counter() - t)
            assert report.reused == args.files and report.inspected == 0
        a, b = statistics.median(first), statistics.median(again)
        print(f"{args.files} LoRA files, median of {args.runs}:")
        print(f"  first scan (every header read): {a * 1000:8.1f} ms")
        print(f"  reopen (index, stat only):      {b * 1000:8.1f} ms")
        print(f"  ratio first/reopen:             {a / b:8.1f}x")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
