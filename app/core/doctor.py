"""``loraloom doctor``: one function per check, each returning a line and a fix where one applies.

Every check reads the world through something a test can fake: PATH (``nvidia-smi``,
``ldd``), the worker interpreter it is given, a disk-usage function, the environment.
torch is never imported here: the worker's interpreter is asked in a subprocess.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from app.core import paths, worker_env
from app.core.worker_env import Accelerator, Hardware

LOW_DISK_BYTES = 10 * 2**30  # a base model plus a training run's checkpoints
LOW_VRAM_MB = 6 * 1024  # SD 1.x training fits; SDXL wants more
# The libraries Qt's xcb platform plugin loads and the Debian/Ubuntu package holding each.
QT_LIB_PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libdbus-1.so.3": "libdbus-1-3",
}

TORCH_PROBE = """
import json
out = {}
try:
    import torch
    out["torch"] = torch.__version__
    out["cuda_build"] = torch.version.cuda
    out["hip"] = getattr(torch.version, "hip", None)
    out["cuda_available"] = bool(torch.cuda.is_available())
    if out["cuda_available"]:
        props = torch.cuda.get_device_properties(0)
        out["device_name"] = props.name
        out["vram_mb"] = int(props.total_memory // 2**20)
    mps = getattr(torch.backends, "mps", None)
    out["mps"] = bool(mps is not None and mps.is_available())
except Exception as exc:
    out["error"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(out))
"""


class Status(str, Enum):
    OK = "ok"
    INFO = "info"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    line: str
    fix: str = ""

    def render(self) -> str:
        text = f"[{self.status.value:>4}] {self.name}: {self.line}"
        return text + (f"\n       fix: {self.fix}" if self.fix else "")


SETUP_FIX = "run `loraloom setup-worker` (or start a job in the app: it offers to set one up)"


# ------------------------------------------------------------------ python, os


def check_python_os() -> Check:
    line = (
        f"Python {platform.python_version()} ({sys.executable}), {platform.system()} {platform.release()} "
        f"{platform.machine()}"
    )
    return Check("Python and OS", Status.OK, line)


# ------------------------------------------------------------------ torch and the GPU


def probe_torch(python: Path | None, timeout_s: float = 120.0) -> dict[str, Any]:
    """What torch the worker's interpreter holds (it imports torch, we do not)."""
    if python is None:
        return {"error": "no worker environment yet"}
    try:
        out = subprocess.run(
            [str(python), "-c", TORCH_PROBE],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            errors="replace",
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return {"error": f"{python} could not be run ({exc})"}
    try:
        data = json.loads(out.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"{python} gave no answer ({last})"}
    return data if isinstance(data, dict) else {"error": "unexpected answer"}


def _build_text(probe: dict[str, Any]) -> str:
    version = str(probe.get("torch", "?")).split("+")[0]
    if probe.get("cuda_build"):
        return f"torch {version} (CUDA {probe['cuda_build']} build)"
    if probe.get("hip"):
        return f"torch {version} (ROCm {probe['hip']} build)"
    return f"torch {version} ({'MPS/CPU' if sys.platform == 'darwin' else 'CPU'} build)"


def check_torch_build(probe: dict[str, Any], hw: Hardware) -> Check:
    """Does the installed torch build fit the GPU that is present?"""
    name = "torch build"
    if "error" in probe:
        if "No module named 'torch'" in probe["error"] or probe["error"] == "no worker environment yet":
            return Check(name, Status.FAIL, f"torch is not installed for the worker ({probe['error']})", SETUP_FIX)
        return Check(name, Status.FAIL, f"torch could not be loaded: {probe['error']}", SETUP_FIX)
    build = _build_text(probe)
    if hw.name and hw.driver and not probe.get("cuda_build"):
        line = f"CPU torch installed but an NVIDIA GPU with driver {hw.driver_major} is present ({hw.name})"
        if hw.accelerator is Accelerator.CPU:  # driver too old for any CUDA build
            return Check(name, Status.WARN, f"{line}; {hw.note}")
        return Check(name, Status.WARN, line, "run `loraloom setup-worker` to install the CUDA build")
    if hw.accelerator is Accelerator.ROCM and not probe.get("hip"):
        return Check(
            name,
            Status.WARN,
            f"{build} installed but an AMD GPU with ROCm is present",
            "run `loraloom setup-worker` to install the ROCm build",
        )
    if probe.get("cuda_build") and not probe.get("cuda_available"):
        found = f"driver {hw.driver}" if hw.driver else "no NVIDIA driver answers (nvidia-smi not found)"
        return Check(
            name,
            Status.WARN,
            f"{build} installed but CUDA is not usable: {found}",
            "update the NVIDIA driver, or run `loraloom setup-worker` for a build this driver runs",
        )
    return Check(name, Status.OK, f"{build}, fits this machine ({hw.describe()})")


def check_accelerator(probe: dict[str, Any]) -> Check:
    """Can the worker use a GPU, and how much memory has it?"""
    name = "GPU"
    if "error" in probe:
        return Check(name, Status.INFO, "unknown until the worker environment exists")
    if probe.get("cuda_available"):
        vram = int(probe.get("vram_mb") or 0)
        line = f"CUDA usable: {probe.get('device_name')}, {vram} MiB"
        if vram and vram < LOW_VRAM_MB:
            return Check(
                name,
                Status.WARN,
                line + " (little memory: SDXL may run out)",
                "use fp16, smaller sizes and batch 1; train SD 1.x rather than SDXL",
            )
        return Check(name, Status.OK, line)
    if probe.get("mps"):
        return Check(name, Status.OK, "Apple MPS usable (memory shared with the system)")
    return Check(name, Status.INFO, "no GPU usable: jobs run on the CPU (tiny models fine, full-size ones slow)")


# ------------------------------------------------------------------ disk


def folder_size(folder: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(folder):  # os.walk follows no symlinked folder
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def check_disk(
    label: str, folder: Path, disk_usage: Callable[[str], Any] = shutil.disk_usage, low_bytes: int = LOW_DISK_BYTES
) -> Check:
    """Free space where a folder lives, and what the folder already takes."""
    name = f"disk ({label})"
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    try:
        usage = disk_usage(str(existing))
    except OSError as exc:
        return Check(name, Status.WARN, f"{folder}: free space unknown ({exc.strerror or exc})")
    held = f"holds {human_bytes(folder_size(folder))}" if folder.is_dir() else "not created yet"
    line = f"{folder} ({held}): {human_bytes(usage.free)} free of {human_bytes(usage.total)}"
    if usage.free < low_bytes:
        return Check(
            name,
            Status.WARN,
            line + " (nearly full)",
            f"free at least {human_bytes(low_bytes)} there, or set LORALOOM_HOME to a larger disk",
        )
    return Check(name, Status.OK, line)


# ------------------------------------------------------------------ Qt


def qt_xcb_plugin() -> Path | None:
    import importlib.util

    spec = importlib.util.find_spec("PySide6")  # found, not imported: core stays free of Qt
    if spec is None or not spec.origin:
        return None
    base = Path(spec.origin).parent
    for candidate in (
        base / "Qt" / "plugins" / "platforms" / "libqxcb.so",
        base / "plugins" / "platforms" / "libqxcb.so",
    ):
        if candidate.is_file():
            return candidate
    return None


def missing_libraries(ldd_output: str) -> list[str]:
    return sorted({m.group(1) for m in re.finditer(r"^\s*(\S+)\s+=>\s+not found", ldd_output, re.M)})


def check_qt(plugin: Path | None = None) -> Check:
    """The Qt platform plugin, and the system libraries it cannot find (Linux)."""
    name = "Qt"
    platform_name = os.environ.get("QT_QPA_PLATFORM", "")
    if not sys.platform.startswith("linux"):
        return Check(name, Status.OK, f"platform plugin {platform_name or 'default'}")
    plugin = plugin or qt_xcb_plugin()
    if plugin is None:
        return Check(name, Status.WARN, "Qt's xcb platform plugin was not found", "reinstall LoRA Loom")
    ldd = shutil.which("ldd")
    if not ldd:
        return Check(name, Status.INFO, f"xcb plugin at {plugin}; ldd not found, libraries not checked")
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=30, check=False).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return Check(name, Status.INFO, f"libraries not checked ({exc})")
    missing = missing_libraries(out)
    if missing:
        packages = " ".join(QT_LIB_PACKAGES.get(lib, lib) for lib in missing)
        return Check(
            name,
            Status.FAIL,
            f"the xcb platform plugin needs missing libraries: {', '.join(missing)}",
            f"sudo apt install {packages}   (Debian/Ubuntu package names)",
        )
    extra = f" (QT_QPA_PLATFORM={platform_name})" if platform_name else ""
    return Check(name, Status.OK, f"xcb platform plugin and its libraries found{extra}")


# ------------------------------------------------------------------ Hub


def check_hub_env() -> Check:
    offline = os.environ.get("HF_HUB_OFFLINE", "")
    endpoint = os.environ.get("HF_ENDPOINT", "")
    parts = [f"HF_HUB_OFFLINE={offline or 'unset'}", f"HF_ENDPOINT={endpoint or 'unset (https://huggingface.co)'}"]
    if offline.lower() in ("1", "true", "yes", "on"):
        return Check(
            "Hub settings",
            Status.INFO,
            ", ".join(parts) + ": only cached files are used",
            "unset HF_HUB_OFFLINE to search and download",
        )
    return Check("Hub settings", Status.OK, ", ".join(parts))


def hub_token_present() -> bool:
    from huggingface_hub import get_token

    return get_token() is not None


def check_hub(endpoint: str | None = None, timeout_s: float = 5.0) -> Check:
    """Can the Hub be reached, and is a token stored (the token itself is never shown)?"""
    name = "Hub"
    login = "a token is stored" if hub_token_present() else "not logged in (public repos only)"
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return Check(name, Status.INFO, f"not contacted (offline mode); {login}")
    endpoint = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    try:
        with urllib.request.urlopen(f"{endpoint}/api/models?limit=1", timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check(
            name,
            Status.WARN,
            f"{endpoint} cannot be reached ({reason}); {login}",
            "check the network or proxy (HTTPS_PROXY), or set HF_HUB_OFFLINE=1 to work from the cache",
        )
    if status >= 500:
        return Check(name, Status.WARN, f"{endpoint} answers with HTTP {status}; {login}", "try again later")
    return Check(name, Status.OK, f"{endpoint} reachable; {login}")


# ------------------------------------------------------------------ worker environment


def check_worker_env(python: Path | None) -> Check:
    settings = worker_env.settings_path()
    configured = ""
    if settings.is_file():
        try:
            configured = worker_env.WorkerSettings.load_toml(settings).python
        except ValueError as exc:
            return Check("worker", Status.FAIL, f"{exc}", f"delete {settings} or choose the Python again")
    if configured and not Path(configured).is_file():
        return Check("worker", Status.FAIL, f"the configured Python {configured} does not exist", SETUP_FIX)
    if python is None:
        return Check("worker", Status.FAIL, "no worker environment yet", SETUP_FIX)
    return Check("worker", Status.OK, f"runs on {python}")


def hub_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def run_checks(*, hub_endpoint: str | None = None, disk_usage: Callable[[str], Any] = shutil.disk_usage) -> list[Check]:
    python = worker_env.worker_python()
    hw = worker_env.detect_hardware()
    probe = probe_torch(python)
    return [
        check_python_os(),
        check_worker_env(python),
        check_torch_build(probe, hw),
        check_accelerator(probe),
        check_disk("data", paths.data_dir(), disk_usage),
        check_disk("cache", paths.cache_dir(), disk_usage),
        check_disk("Hub cache", hub_cache_dir(), disk_usage),
        check_qt(),
        check_hub_env(),
        check_hub(hub_endpoint),
    ]
