"""Downloads from a loopback fake Hub: our resumable loop beside ``hf_hub_download``.

Two claims, measured on the same fake server (tests/support/fake_hub.py):

1. Speed: ``app.core.hub.client.Hub.download`` (Range-resumable, sha256-verified) against
   ``huggingface_hub.hf_hub_download`` for one file, fresh cache each run.
2. Resume: bytes fetched for a download interrupted at half way and started again.
   huggingface_hub 2.4 deletes its partial file on any failure, so it fetches 1.5x the
   file; ours keeps the partial and asks for the rest with ``Range`` (1.0x plus what was in
   flight when Cancel was pressed).

    .venv/bin/python bench/hub_download.py [--mb 64] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "support")]
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ.pop("HF_HUB_OFFLINE", None)

from fake_hub import FakeFile, FakeHub, FakeRepo  # noqa: E402
from huggingface_hub import hf_hub_download  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from app.core.hub.client import Hub  # noqa: E402
from app.core.hub.errors import HubError  # noqa: E402

NAME = "big.safetensors"
REPO = "bench/big-lora"


class _StopAtHalf(tqdm):
    def __init__(self, *a, **kw):
        kw["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed with the process
        super().__init__(*a, **kw)

    def update(self, n=1):
        super().update(n)
        if self.total and self.n >= self.total // 2:
            raise KeyboardInterrupt("stop at half")


def sent_bytes(fake: FakeHub) -> int:
    """Bytes of the file the server actually wrote, over all its GETs."""
    return sum(g.get("sent", 0) for g in fake.gets_of(NAME))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    data = os.urandom(args.mb * 1024 * 1024)
    fake = FakeHub([FakeRepo(REPO, {NAME: FakeFile(data)}, tags=["lora"])])
    root = Path(tempfile.mkdtemp(prefix="loraloom-bench-"))
    ours, theirs = [], []
    try:
        for run in range(args.runs):
            cache = root / f"ours{run}"
            t = time.perf_counter()
            Hub(endpoint=fake.url, token=False, cache_dir=cache).download(REPO, NAME)
            ours.append(time.perf_counter() - t)
            cache = root / f"hf{run}"
            t = time.perf_counter()
            hf_hub_download(REPO, NAME, cache_dir=cache, endpoint=fake.url, token=False)
            theirs.append(time.perf_counter() - t)
        a, b = statistics.median(ours), statistics.median(theirs)
        mb = len(data) / 1024 / 1024
        print(f"{mb:.0f} MB file, median of {args.runs}, loopback:")
        print(f"  Hub.download (resumable, sha256 checked): {a:6.2f} s  {mb / a:7.1f} MB/s")
        print(f"  hf_hub_download:                          {b:6.2f} s  {mb / b:7.1f} MB/s")
        print(f"  time ratio ours/hf_hub_download:          {a / b:6.2f}")

        fake.reset()
        cancel = threading.Event()
        hub = Hub(endpoint=fake.url, token=False, cache_dir=root / "resume-ours")
        try:
            hub.download(
                REPO,
                NAME,
                cancel=cancel,
                on_progress=lambda done, total: cancel.set() if done >= len(data) // 2 else None,
            )
        except HubError:
            pass
        hub.download(REPO, NAME)
        ours_bytes = sent_bytes(fake)
        fake.reset()
        try:
            hf_hub_download(
                REPO, NAME, cache_dir=root / "resume-hf", endpoint=fake.url, token=False, tqdm_class=_StopAtHalf
            )
        except KeyboardInterrupt:
            pass
        hf_hub_download(REPO, NAME, cache_dir=root / "resume-hf", endpoint=fake.url, token=False)
        hf_bytes = sent_bytes(fake)
        print("interrupted at half way, then started again (bytes the server sent / file size):")
        print(f"  Hub.download:    {ours_bytes / len(data):.2f}")
        print(f"  hf_hub_download: {hf_bytes / len(data):.2f}")
    finally:
        fake.close()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
