"""The worker's Python environment: which interpreter runs ``app.worker``, and how to make one.

The GUI never imports torch, so a frozen (PyInstaller) GUI holds no torch at all; its
worker runs in a separate environment under the data folder, created on first use with
``uv`` (``loraloom setup-worker`` or the GUI's setup dialog). The hardware found decides
which torch build is installed: the NVIDIA driver version (``nvidia-smi``) picks the
newest CUDA build it can run, ROCm on Linux with an AMD GPU, the PyPI wheel on Apple
silicon (MPS) and the CPU build otherwise. Everything else is pinned by
``packaging/worker-requirements.txt``.

In a normal checkout the worker keeps running on ``sys.executable`` unless the user
configured another interpreter.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from app.core import paths
from app.core.configs import ConfigError, _Config

SETTINGS_FILE = "worker.toml"
ENV_FOLDER = "worker-env"
LOCK_NAME = "worker-requirements.txt"
BASE_PYTHON = "3.11"  # the version the lock file was made with
TORCH_INDEX = "https://download.pytorch.org/whl"
ROCM_TAG = "rocm6.4"
# Newest CUDA build first: (oldest Linux driver major version that runs it, index tag).
# From NVIDIA's CUDA toolkit release notes, table "CUDA Toolkit and Minimum Driver Versions".
CUDA_BUILDS: tuple[tuple[int, str], ...] = ((580, "cu130"), (570, "cu128"), (560, "cu126"))
HELLO_TIMEOUT_S = 120.0


class Accelerator(str, Enum):
    CUDA = "cuda"
    ROCM = "rocm"
    MPS = "mps"
    CPU = "cpu"


@dataclass(frozen=True)
class Hardware:
    accelerator: Accelerator
    name: str = ""  # the GPU's name, when one was found
    driver: str = ""  # NVIDIA driver version, e.g. "560.35.03"
    vram_mb: int = 0
    note: str = ""  # why the choice falls back (driver too old, ...)

    @property
    def driver_major(self) -> int:
        try:
            return int(self.driver.split(".")[0])
        except ValueError:
            return 0

    def describe(self) -> str:
        if self.accelerator is Accelerator.CUDA or (self.name and self.driver):
            text = f"NVIDIA {self.name} (driver {self.driver}, {self.vram_mb} MiB)"
        elif self.accelerator is Accelerator.ROCM:
            text = f"AMD GPU with ROCm ({self.name})" if self.name else "AMD GPU with ROCm"
        elif self.accelerator is Accelerator.MPS:
            text = "Apple silicon (MPS)"
        else:
            text = "no GPU found: CPU"
        return f"{text}; {self.note}" if self.note else text


@dataclass
class WorkerSettings(_Config):
    """``worker.toml`` in the config folder: the interpreter the GUI starts the worker with."""

    python: str = ""  # empty: the default (sys.executable in a checkout, the data folder's env when frozen)


# ------------------------------------------------------------------ hardware


def parse_nvidia_smi(text: str) -> list[tuple[str, str, int]]:
    """``name, driver_version, memory.total`` CSV lines (noheader, nounits) -> tuples."""
    gpus = []
    for line in text.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[1][:1].isdigit():
            continue
        try:
            vram = int(float(parts[2]))
        except ValueError:
            vram = 0
        gpus.append((parts[0], parts[1], vram))
    return gpus


def nvidia_gpus() -> list[tuple[str, str, int]]:
    """The NVIDIA GPUs ``nvidia-smi`` (found on PATH) reports; empty when none answers."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return parse_nvidia_smi(out.stdout) if out.returncode == 0 else []


def detect_hardware() -> Hardware:
    gpus = nvidia_gpus()
    if gpus:
        name, driver, vram = max(gpus, key=lambda g: g[2])
        hw = Hardware(Accelerator.CUDA, name, driver, vram)
        if cuda_tag(hw) is None:
            oldest = CUDA_BUILDS[-1][0]
            return Hardware(
                Accelerator.CPU,
                name,
                driver,
                vram,
                note=f"driver {driver} is older than {oldest}, the oldest today's torch runs on: "
                f"CPU build (update the NVIDIA driver to use the GPU)",
            )
        return hw
    if sys.platform.startswith("linux") and (shutil.which("rocminfo") or os.path.exists("/dev/kfd")):
        return Hardware(Accelerator.ROCM)
    if sys.platform == "darwin" and platform.machine() == "arm64":
        return Hardware(Accelerator.MPS)
    return Hardware(Accelerator.CPU)


def cuda_tag(hw: Hardware) -> str | None:
    for min_driver, tag in CUDA_BUILDS:
        if hw.driver_major >= min_driver:
            return tag
    return None


def torch_index_for(hw: Hardware) -> str | None:
    """The index to install torch from; None means the default index (PyPI)."""
    if hw.accelerator is Accelerator.CUDA:
        return f"{TORCH_INDEX}/{cuda_tag(hw)}"
    if hw.accelerator is Accelerator.ROCM:
        return f"{TORCH_INDEX}/{ROCM_TAG}"
    if hw.accelerator is Accelerator.MPS or sys.platform == "darwin":
        return None  # PyPI's macOS wheels are the MPS/CPU build
    return f"{TORCH_INDEX}/cpu"


# ------------------------------------------------------------------ where things are


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def bundle_dir() -> Path:
    """The frozen app's resource folder, or the checkout's root."""
    meipass = getattr(sys, "_MEIPASS", None)
    return Path(meipass) if is_frozen() and meipass else Path(__file__).resolve().parents[2]


def source_root() -> Path:
    """The folder holding the ``app`` package that the worker interpreter imports."""
    return bundle_dir() / "worker_src" if is_frozen() else bundle_dir()


def lock_file() -> Path:
    return bundle_dir() / "packaging" / LOCK_NAME


def default_env_dir() -> Path:
    return paths.data_dir() / ENV_FOLDER


def env_python(env_dir: Path) -> Path:
    return env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def settings_path() -> Path:
    return paths.config_dir() / SETTINGS_FILE


def load_settings() -> WorkerSettings:
    try:
        return WorkerSettings.load_toml(settings_path())
    except ConfigError:  # missing or damaged: the defaults (doctor reports a damaged one)
        return WorkerSettings()


def save_python(python: Path | str) -> None:
    WorkerSettings(python=str(python)).save_toml(settings_path())


def find_uv() -> Path | None:
    """The ``uv`` binary: bundled in the frozen app, the ``uv`` package's, or on PATH."""
    if is_frozen():
        bundled = bundle_dir() / "uv" / ("uv.exe" if os.name == "nt" else "uv")
        if bundled.is_file():
            return bundled
    try:
        import uv  # the PyPI package only ships the binary and this finder

        return Path(uv.find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        return Path(found) if found else None


def worker_python() -> Path | None:
    """The interpreter to run the worker with; None when the frozen app has none yet."""
    configured = load_settings().python
    if configured and Path(configured).is_file():
        return Path(configured)
    # Only a saved choice counts: setup saves it once the new worker has answered, so an
    # environment half-made by a killed setup is never started.
    return None if is_frozen() else Path(sys.executable)


def worker_command(python: Path | None = None) -> list[str] | None:
    python = python or worker_python()
    return [str(python), "-m", "app.worker"] if python else None


def launch_env(python: Path | str) -> dict[str, str]:
    """Environment additions for a worker on ``python``: it must find our ``app`` package."""
    if Path(python) == Path(sys.executable):
        return {}
    existing = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(source_root()), existing) if p)}


# ------------------------------------------------------------------ creating one


@dataclass
class SetupPlan:
    """The commands that make a worker environment; run them in order, stop at the first failure."""

    env_dir: Path
    python: Path
    hardware: Hardware
    torch_index: str | None
    commands: list[list[str]]
    env: dict[str, str] = field(default_factory=dict)


def torch_pin(lock: Path) -> str:
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line.strip().lower().startswith("torch=="):
            return line.strip()
    raise ValueError(f"{lock}: no torch==VERSION line")


def plan_setup(
    env_dir: Path,
    *,
    uv: Path,
    hardware: Hardware,
    torch_index: str | None = None,
    find_links: list[str] | None = None,
    offline: bool = False,
    base_python: str = BASE_PYTHON,
    lock: Path | None = None,
) -> SetupPlan:
    """The uv command lines for a new environment at ``env_dir``.

    ``offline`` installs from ``find_links`` only (``--no-index``); ``torch_index``
    overrides the index chosen from the hardware.
    """
    lock = lock or lock_file()
    if not lock.is_file():
        raise FileNotFoundError(f"{lock}: the worker's lock file is missing")
    index = torch_index if torch_index is not None else torch_index_for(hardware)
    python = env_python(env_dir)
    links: list[str] = []
    for link in find_links or []:
        links += ["--find-links", str(link)]
    source = ["--offline", "--no-index"] if offline else []
    torch_source = source or (["--index-url", index] if index else [])
    # --no-config: a uv.toml of the user's must not send torch to another index.
    commands = [
        [str(uv), "venv", "--no-config", "--no-project", "--python", base_python, str(env_dir)],
        [
            str(uv),
            "pip",
            "install",
            "--no-config",
            "--python",
            str(python),
            *torch_source,
            *links,
            "-c",
            str(lock),
            torch_pin(lock),
        ],
        [str(uv), "pip", "install", "--no-config", "--python", str(python), *source, *links, "-r", str(lock)],
    ]
    # uv's cache under our cache folder: the user's data stays in one place, tests stay private.
    env = {"UV_CACHE_DIR": str(paths.cache_dir() / "uv"), "UV_PYTHON_DOWNLOADS": "never" if offline else "automatic"}
    return SetupPlan(env_dir, python, hardware, index, commands, env)


class SetupRun:
    """Runs a plan's commands one after the other; :meth:`cancel` may be called from another thread.

    Raises :class:`SetupError` naming the command that failed; a failed or cancelled
    setup removes the half-made environment.
    """

    def __init__(self, plan: SetupPlan) -> None:
        self.plan = plan
        self._proc: subprocess.Popen | None = None
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()  # its stdout ends, so run() notices at once, not at the next line

    def run(self, on_line: Callable[[str], None]) -> None:
        env = {**os.environ, **self.plan.env}
        try:
            for step, cmd in enumerate(self.plan.commands, 1):
                if self._cancelled.is_set():
                    raise SetupError("setup cancelled")
                on_line(f"[{step}/{len(self.plan.commands)}] $ " + " ".join(cmd))
                with subprocess.Popen(
                    cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", env=env
                ) as proc:
                    self._proc = proc
                    assert proc.stdout is not None
                    for line in proc.stdout:
                        on_line(line.rstrip("\n"))
                self._proc = None
                if self._cancelled.is_set():
                    raise SetupError("setup cancelled")
                if proc.returncode != 0:
                    raise SetupError(
                        f"`{Path(cmd[0]).name} {' '.join(cmd[1:3])}` failed with exit code {proc.returncode}"
                    )
        except BaseException:
            discard_env(self.plan.env_dir)
            raise


def run_plan(plan: SetupPlan, on_line: Callable[[str], None]) -> None:
    SetupRun(plan).run(on_line)


def setup_defaults() -> dict:
    """Setup options from the environment, for offline or managed installs (the CLI's flags override).

    ``LORALOOM_SETUP_FIND_LINKS`` (folders, separated like PATH), ``LORALOOM_SETUP_OFFLINE=1``
    and ``LORALOOM_SETUP_PYTHON`` (the base interpreter).
    """
    links = [p for p in os.environ.get("LORALOOM_SETUP_FIND_LINKS", "").split(os.pathsep) if p]
    return {
        "find_links": links,
        "offline": os.environ.get("LORALOOM_SETUP_OFFLINE") == "1",
        "base_python": os.environ.get("LORALOOM_SETUP_PYTHON") or BASE_PYTHON,
    }


def discard_env(env_dir: Path) -> None:
    """Remove a half-made environment (only one we were making: it must hold pyvenv.cfg)."""
    if env_dir.is_dir() and not env_dir.is_symlink() and (env_dir / "pyvenv.cfg").is_file():
        shutil.rmtree(env_dir, ignore_errors=True)


class SetupError(RuntimeError):
    """One sentence on why the worker environment could not be made."""


# ------------------------------------------------------------------ checking one


def probe_worker(python: Path | str, timeout_s: float = HELLO_TIMEOUT_S) -> dict:
    """Start ``python -m app.worker``, return its hello event, and let it exit.

    Raises :class:`SetupError` with the last line of its output when it gives none.
    """
    cmd = worker_command(Path(python))
    assert cmd is not None
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **launch_env(python)}
    try:
        out = subprocess.run(
            cmd,
            input='{"cmd":"shutdown"}\n',
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise SetupError(f"{python}: the worker could not be started ({exc})") from None
    for line in out.stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("type") == "hello":
            return event
    last = (out.stderr.strip().splitlines() or ["no output"])[-1]
    raise SetupError(f"{python}: the worker did not start ({last})")


def package_versions(python: Path | str, names: tuple[str, ...] = ("torch", "diffusers")) -> dict[str, str | None]:
    """Installed versions in another interpreter, read from its metadata (imports nothing heavy)."""
    script = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: out[n] = None\n"
        "print(json.dumps(out))\n"
    )
    try:
        out = subprocess.run(
            [str(python), "-c", script, *names], capture_output=True, text=True, timeout=30, check=False
        )
        data = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return {n: None for n in names}
    return {n: data.get(n) for n in names}
