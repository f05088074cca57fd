"""Shared test setup: offscreen Qt, a private LORALOOM_HOME, offline Hub, tiny models."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Must be set before Qt, huggingface_hub or transformers are imported anywhere.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TRANSFORMERS_VERBOSITY"] = "error"
os.environ["DIFFUSERS_VERBOSITY"] = "error"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Tiny models run several times faster on one thread (thread hand-offs cost more than the maths;
# measured 165 s against 552 s for the same engine tests side by side on a busy 2-core machine).
# Read by torch at import, here and in every worker or CLI subprocess the tests start.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Helper modules (fake Hub, adapter factory, worker driver ...) and the fixtures that tests in
# several folders share live in tests/support/, importable by their plain module names.
sys.path.insert(0, str(Path(__file__).resolve().parent / "support"))
pytest_plugins = ["adapter_fixtures", "captioner_fixtures", "hub_fixtures", "training_fixtures"]


@pytest.fixture(autouse=True)
def loraloom_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own data folder, so nothing touches the user's real one."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("LORALOOM_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_sd1(tmp_path_factory) -> Path:
    """A freshly generated random-weight tiny SD1 diffusers folder (session-wide)."""
    from app.engine.tiny import write_tiny_model

    out = tmp_path_factory.mktemp("tiny") / "tiny-sd1"
    write_tiny_model(out, family="sd1", seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Path:
    from app.engine.tiny import write_tiny_model

    out = tmp_path_factory.mktemp("tiny") / "tiny-sdxl"
    write_tiny_model(out, family="sdxl", seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_flux1(tmp_path_factory) -> Path:
    """A random-weight tiny Flux.1 diffusers folder (FluxPipeline; session-wide)."""
    from app.engine.tiny import write_tiny_model

    out = tmp_path_factory.mktemp("tiny") / "tiny-flux1"
    write_tiny_model(out, family="flux1", seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """``tiny_model("zimage")`` -> a random-weight tiny folder of that family (``loraloom
    tiny-model --family``), written once a session per family and process."""
    from app.engine.tiny import write_tiny_model

    made: dict[str, Path] = {}

    def make(family: str, seed: int = 0) -> Path:
        key = f"{family}-{seed}"
        if key not in made:
            made[key] = tmp_path_factory.mktemp("tiny") / f"tiny-{key}"
            write_tiny_model(made[key], family=family, seed=seed)
        return made[key]

    return make


@pytest.fixture
def python_exe() -> str:
    return sys.executable
