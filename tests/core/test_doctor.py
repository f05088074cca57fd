"""``loraloom doctor``: each check with its condition faked (PATH, disk usage, ldd, the environment)."""

from __future__ import annotations

import http.server
import os
import stat
import subprocess
import sys
import threading
from collections import namedtuple
from pathlib import Path

import pytest

from app.core import doctor, worker_env
from app.core.doctor import Status

ROOT = Path(__file__).resolve().parents[2]
Usage = namedtuple("Usage", "total used free")


def script(folder: Path, name: str, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def bare_path(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}/bin{os.pathsep}/usr/bin")
    return folder


@pytest.fixture(scope="module")
def cpu_torch_probe() -> dict:
    """What this test environment's torch (the CPU build) reports, asked the way doctor asks."""
    return doctor.probe_torch(Path(sys.executable))


def test_no_gpu_and_cpu_torch_is_fine(bare_path, cpu_torch_probe):
    hw = worker_env.detect_hardware()
    check = doctor.check_torch_build(cpu_torch_probe, hw)
    assert check.status is Status.OK and check.fix == ""
    assert check.line == "torch 2.13.0 (CPU build), fits this machine (no GPU found: CPU)"
    gpu = doctor.check_accelerator(cpu_torch_probe)
    assert gpu.status is Status.INFO and gpu.line.startswith("no GPU usable: jobs run on the CPU")


def test_cpu_torch_with_an_nvidia_gpu_present_says_run_setup_worker(bare_path, cpu_torch_probe):
    script(bare_path, "nvidia-smi", "echo 'NVIDIA GeForce RTX 4090, 560.35.03, 24564'\n")
    check = doctor.check_torch_build(cpu_torch_probe, worker_env.detect_hardware())
    assert check.status is Status.WARN
    assert check.render() == (
        "[warn] torch build: CPU torch installed but an NVIDIA GPU with driver 560 is present (NVIDIA GeForce RTX 4090)"
        "\n       fix: run `loraloom setup-worker` to install the CUDA build"
    )


def test_no_worker_environment_in_the_frozen_app(monkeypatch):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    python = worker_env.worker_python()
    assert python is None
    check = doctor.check_torch_build(doctor.probe_torch(python), worker_env.Hardware(worker_env.Accelerator.CPU))
    assert check.status is Status.FAIL and "setup-worker" in check.fix
    assert doctor.check_worker_env(python).line == "no worker environment yet"


def test_a_python_without_torch_is_reported_not_crashed(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    probe = doctor.probe_torch(worker_env.env_python(venv))
    check = doctor.check_torch_build(probe, worker_env.Hardware(worker_env.Accelerator.CPU))
    assert check.status is Status.FAIL
    assert check.line == "torch is not installed for the worker (ModuleNotFoundError: No module named 'torch')"


def test_disk_nearly_full(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "model.bin").write_bytes(b"x" * 2048)
    full = doctor.check_disk(
        "data", tmp_path / "data", disk_usage=lambda _p: Usage(100 * 2**30, 99.5 * 2**30, 512 * 2**20)
    )
    assert full.status is Status.WARN
    assert full.line == f"{tmp_path / 'data'} (holds 2.0 KB): 512.0 MB free of 100.0 GB (nearly full)"
    assert "LORALOOM_HOME" in full.fix
    roomy = doctor.check_disk("data", tmp_path / "missing", disk_usage=lambda _p: Usage(2**40, 0, 2**40))
    assert roomy.status is Status.OK and "(not created yet)" in roomy.line


@pytest.mark.skipif(not Path("/dev/shm").is_dir() or os.geteuid() != 0, reason="needs root to mount a tmpfs")
def test_disk_nearly_full_on_a_real_tiny_tmpfs(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("mount -t tmpfs not permitted here")
    try:
        check = doctor.check_disk("data", mount / "loraloom")  # the real shutil.disk_usage
        assert check.status is Status.WARN and "free of 2.0 MB (nearly full)" in check.line
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def test_missing_qt_library_names_the_package(bare_path, tmp_path):
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"")
    script(bare_path, "ldd", "echo '\tlibxcb-cursor.so.0 => not found'\necho '\tlibc.so.6 => /lib/libc.so.6 (0x1)'\n")
    check = doctor.check_qt(plugin)
    if not sys.platform.startswith("linux"):
        pytest.skip("the xcb plugin is Linux only")
    assert check.status is Status.FAIL
    assert check.line == "the xcb platform plugin needs missing libraries: libxcb-cursor.so.0"
    assert check.fix.startswith("sudo apt install libxcb-cursor0")


def test_qt_plugin_with_every_library(bare_path, tmp_path):
    plugin = tmp_path / "libqxcb.so"
    plugin.write_bytes(b"")
    script(bare_path, "ldd", "echo '\tlibc.so.6 => /lib/libc.so.6 (0x1)'\n")
    assert doctor.check_qt(plugin).status is Status.OK


def test_hub_offline_and_endpoint_are_shown(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    check = doctor.check_hub_env()
    assert check.line.startswith("HF_HUB_OFFLINE=1, HF_ENDPOINT=http://127.0.0.1:9")
    assert "unset HF_HUB_OFFLINE" in check.fix
    assert doctor.check_hub().line.startswith("not contacted (offline mode)")


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"[]")

    def log_message(self, *args):
        pass


def test_hub_reachable_and_unreachable_and_the_token_never_shown(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", "hf_doctorSecretToken1234567890")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        ok = doctor.check_hub(url)
        assert ok.status is Status.OK and ok.line == f"{url} reachable; a token is stored"
    finally:
        server.shutdown()
        server.server_close()
    down = doctor.check_hub(url, timeout_s=2)
    assert down.status is Status.WARN and "cannot be reached" in down.line and "HF_HUB_OFFLINE=1" in down.fix
    assert "hf_doctor" not in ok.render() + down.render()


def test_doctor_command_prints_one_line_per_check():
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "doctor"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    names = [line.split("]", 1)[1].split(":", 1)[0].strip() for line in out.stdout.splitlines() if line.startswith("[")]
    assert names == [
        "Python and OS",
        "worker",
        "torch build",
        "GPU",
        "disk (data)",
        "disk (cache)",
        "disk (Hub cache)",
        "Qt",
        "Hub settings",
        "Hub",
    ]
    assert "Traceback" not in out.stderr
