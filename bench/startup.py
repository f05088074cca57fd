"""How fast the GUI shows its window, beside how long ``import torch`` alone takes.

The GUI process never imports torch (DESIGN section 2); this prints the evidence:
the median wall time from launching ``python -m app`` (offscreen) until its main
window has painted, the median of ``python -c "import torch"``, and their ratio.

    .venv/bin/python bench/startup.py [--runs 7] [--frozen dist/loraloom/loraloom]

``--frozen`` also times the PyInstaller bundle (``make package``) the same way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def time_until_line(cmd: list[str], marker: str, env: dict[str, str], timeout: float = 60.0) -> float:
    """Wall seconds from process launch until ``marker`` appears on its stdout (or exit, if empty)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    assert proc.stdout is not None
    try:
        if marker:
            for line in proc.stdout:
                if line.startswith(marker):
                    elapsed = time.perf_counter() - start
                    break
            else:
                raise RuntimeError(f"{cmd} exited without printing {marker!r}")
        proc.wait(timeout=timeout)
        if not marker:
            elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"{cmd} exited with {proc.returncode}")
    finally:
        if proc.poll() is None:
            proc.kill()
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--frozen", default="", help="the packaged binary to time as well")
    args = parser.parse_args()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", LORALOOM_EXIT_AFTER_PAINT="1")
    env["LORALOOM_HOME"] = tempfile.mkdtemp(prefix="loraloom-bench-")  # no user settings involved
    gui_cmd = [sys.executable, "-m", "app"]
    torch_cmd = [sys.executable, "-c", "import torch"]
    bare_cmd = [sys.executable, "-c", "pass"]

    # One warm-up each so that the first run does not pay for a cold file cache.
    time_until_line(gui_cmd, "first-paint", env)
    time_until_line(torch_cmd, "", env)
    frozen: list[float] = []
    if args.frozen:
        first = time_until_line([args.frozen], "first-paint", env)
        print(f"frozen bundle, first launch        : {first * 1000:7.0f} ms")
    gui, torch_t, bare = [], [], []
    for _ in range(args.runs):  # interleaved, so machine noise hits all three alike
        if args.frozen:
            frozen.append(time_until_line([args.frozen], "first-paint", env))
        gui.append(time_until_line(gui_cmd, "first-paint", env))
        torch_t.append(time_until_line(torch_cmd, "", env))
        bare.append(time_until_line(bare_cmd, "", env))
    g, t, b = statistics.median(gui), statistics.median(torch_t), statistics.median(bare)
    print(f"runs: {args.runs} (medians; interleaved)")
    print(f"GUI launch -> first painted window : {g * 1000:7.0f} ms")
    print(f"python -c 'import torch'           : {t * 1000:7.0f} ms")
    print(f"python -c 'pass' (bare interpreter): {b * 1000:7.0f} ms")
    print(f"ratio GUI first paint / import torch: {g / t:.2f}")
    if frozen:
        f = statistics.median(frozen)
        print(f"frozen bundle -> first painted window: {f * 1000:7.0f} ms (ratio to the checkout's GUI {f / g:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
