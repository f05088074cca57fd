"""Which interpreter runs the worker, which torch index fits the hardware, and the uv commands."""

from __future__ import annotations

import os
import re
import stat
import sys
from pathlib import Path

import pytest

from app.core import worker_env as w
from app.core.worker_env import Accelerator, Hardware

ROOT = Path(__file__).resolve().parents[2]
SMI_560 = "NVIDIA GeForce RTX 4090, 560.35.03, 24564\n"


def fake_nvidia_smi(folder: Path, output: str) -> Path:
    """An ``nvidia-smi`` on PATH that prints ``output`` for the query we make."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{output}EOF\n", encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


@pytest.fixture
def bare_path(tmp_path, monkeypatch) -> Path:
    """PATH with only a private bin folder (plus /bin for sh): no real nvidia-smi or rocminfo."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}/bin")
    return folder


def test_nvidia_smi_lines_parse_and_junk_is_skipped():
    text = "NVIDIA A100-SXM4-80GB, 570.86.15, 81920\nNo devices were found\n\nTesla T4, 535.1, 15360\n"
    assert w.parse_nvidia_smi(text) == [("NVIDIA A100-SXM4-80GB", "570.86.15", 81920), ("Tesla T4", "535.1", 15360)]


@pytest.mark.parametrize(("driver", "tag"), [("580.65.06", "cu130"), ("570.86.15", "cu128"), ("560.35.03", "cu126")])
def test_driver_version_picks_the_newest_cuda_build_it_runs(bare_path, driver, tag):
    fake_nvidia_smi(bare_path, f"NVIDIA GeForce RTX 4090, {driver}, 24564\n")
    hw = w.detect_hardware()
    assert hw.accelerator is Accelerator.CUDA and hw.driver == driver and hw.vram_mb == 24564
    assert w.torch_index_for(hw) == f"https://download.pytorch.org/whl/{tag}"


def test_a_driver_too_old_for_every_build_falls_back_to_cpu_and_says_why(bare_path):
    fake_nvidia_smi(bare_path, "Tesla T4, 535.104.05, 15360\n")
    hw = w.detect_hardware()
    assert hw.accelerator is Accelerator.CPU
    assert "driver 535.104.05 is older than 560" in hw.describe()
    assert w.torch_index_for(hw) == "https://download.pytorch.org/whl/cpu"


def test_no_gpu_means_the_cpu_index(bare_path):
    hw = w.detect_hardware()
    assert hw == Hardware(Accelerator.CPU) or hw.accelerator is Accelerator.ROCM  # /dev/kfd on an AMD host
    if hw.accelerator is Accelerator.CPU:
        assert w.torch_index_for(hw) == "https://download.pytorch.org/whl/cpu"
        assert hw.describe() == "no GPU found: CPU"


def test_rocm_and_mps_indexes():
    assert w.torch_index_for(Hardware(Accelerator.ROCM)) == f"https://download.pytorch.org/whl/{w.ROCM_TAG}"
    assert w.torch_index_for(Hardware(Accelerator.MPS)) is None  # PyPI's macOS wheel has MPS


def test_plan_installs_torch_from_the_hardware_index_then_the_lock(tmp_path):
    uv = tmp_path / "uv"
    hw = Hardware(Accelerator.CUDA, "RTX", "570.1", 8000)
    plan = w.plan_setup(tmp_path / "env", uv=uv, hardware=hw, find_links=["/wheels"])
    venv, torch, rest = plan.commands
    assert venv[:2] == [str(uv), "venv"] and venv[-1] == str(tmp_path / "env")
    assert torch[torch.index("--index-url") + 1] == "https://download.pytorch.org/whl/cu128"
    assert torch[-1] == "torch==2.13.0" and "--find-links" in torch
    assert rest[-2:] == ["-r", str(w.lock_file())] and "--index-url" not in rest
    assert plan.env["UV_CACHE_DIR"].startswith(os.environ["LORALOOM_HOME"])  # never the user's real cache


def test_offline_plan_uses_no_index_at_all(tmp_path):
    plan = w.plan_setup(
        tmp_path / "env",
        uv=tmp_path / "uv",
        hardware=Hardware(Accelerator.CPU),
        torch_index="https://example.invalid/whl",
        find_links=["/wheels"],
        offline=True,
    )
    for cmd in plan.commands[1:]:
        assert "--no-index" in cmd and "--offline" in cmd and "--index-url" not in cmd
    assert plan.env["UV_PYTHON_DOWNLOADS"] == "never"


def test_the_lock_pins_every_worker_dependency_of_pyproject():
    """A dependency added to pyproject.toml but not to the lock would be missing in the worker env."""
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    gui_only = {"pyside6-essentials", "pyqtgraph", "uv", "tomli"}
    wanted = {re.split(r"[<>=!~; \[]", d, maxsplit=1)[0].lower().replace("_", "-") for d in deps} - gui_only
    pinned = {}
    for line in w.lock_file().read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"lock line {line!r} is not pinned with =="
            pinned[name.lower().replace("_", "-")] = version
    assert wanted - set(pinned) == set()
    assert w.torch_pin(w.lock_file()) == "torch==2.13.0"


def test_a_checkout_keeps_sys_executable_until_another_python_is_configured(tmp_path):
    assert w.worker_command() == [sys.executable, "-m", "app.worker"]
    assert w.launch_env(sys.executable) == {}
    other = tmp_path / "py" / "bin" / "python"
    other.parent.mkdir(parents=True)
    other.write_text("", encoding="utf-8")
    w.save_python(other)
    assert w.worker_command() == [str(other), "-m", "app.worker"]
    # Another interpreter must still find our app package.
    assert w.launch_env(other)["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)


def test_the_frozen_app_has_no_worker_until_setup_has_finished(monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert w.worker_command() is None
    python = w.env_python(w.default_env_dir())
    python.parent.mkdir(parents=True)
    python.write_text("", encoding="utf-8")
    assert w.worker_command() is None  # half-made: a killed setup leaves this much
    w.save_python(python)  # what setup does once the new worker has answered
    assert w.worker_command() == [str(python), "-m", "app.worker"]


def test_a_configured_python_that_vanished_is_not_used(tmp_path, monkeypatch):
    w.save_python(tmp_path / "gone" / "python")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert w.worker_python() is None
