"""``accelerate launch -m app.cli train``: two CPU processes share the work like accumulation would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest
from train_helpers import small_config

from app.engine.training import train
from app.engine.training.run import read_log

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_like_one_with_gradient_accumulation(tmp_path, tiny_sd1, red_dataset):
    runs = tmp_path / "runs"
    config = small_config(tiny_sd1, red_dataset, name="mp", steps=2, output_dir=str(runs), network={"dropout": 0.0})
    path = tmp_path / "mp.toml"
    config.save_toml(path)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        "-m",
        "app.cli",
        "train",
        str(path),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=280, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert [p.name for p in runs.iterdir()] == ["mp"]  # only the main process made a run folder
    assert out.stdout.strip().splitlines() == [str(runs / "mp" / "mp.safetensors")]
    logged = read_log(runs / "mp" / "log.jsonl")
    assert [r["step"] for r in logged] == [1, 2]
    # One process with 2 micro-batches per step sees the same pictures, noise and timesteps.
    single = train(
        small_config(
            tiny_sd1, red_dataset, name="one", steps=2, gradient_accumulation=2, output_dir=str(tmp_path / "single")
        )
    )
    for record in logged:
        assert record["loss"] == pytest.approx(single.losses[record["step"]], rel=1e-4)
