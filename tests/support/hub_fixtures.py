"""Fixtures for the Library and Hub tests: a loopback fake Hub and a client pointed at it.

tests/conftest.py turns the Hub off for the whole suite (HF_HUB_OFFLINE=1), and
``huggingface_hub`` may already have been imported by other test modules, so its
import-time constants cannot be relied on. In this process the tests that talk to the
fake server switch ``huggingface_hub.constants.HF_HUB_OFFLINE`` off for their duration
and give the endpoint to :class:`app.core.hub.client.Hub` explicitly; subprocess tests (the CLI)
get ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE=0`` in their environment, read at import as
the real client does.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_hub import FakeHub  # noqa: E402


@pytest.fixture(scope="session")
def fake_hub_server():
    server = FakeHub()
    yield server
    server.close()


@pytest.fixture
def fake_hub(fake_hub_server, monkeypatch) -> FakeHub:
    """The fake Hub, its faults and request log reset, with the client's offline switch off."""
    from huggingface_hub import constants

    fake_hub_server.reset()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_ENDPOINT", fake_hub_server.url)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    return fake_hub_server


@pytest.fixture
def hf_cache(tmp_path) -> Path:
    path = tmp_path / "hf-cache"
    path.mkdir()
    return path


@pytest.fixture
def hub(fake_hub, hf_cache):
    """A client for the fake Hub with no token (token=False: nothing from the user's store)."""
    from app.core.hub.client import Hub

    return Hub(endpoint=fake_hub.url, token=False, cache_dir=hf_cache, timeout=5.0)


@pytest.fixture
def subprocess_env(fake_hub, tmp_path) -> dict[str, str]:
    """Environment for a ``loraloom`` subprocess that talks to the fake Hub with its own HF_HOME."""
    env = dict(os.environ)
    env.update(
        {
            "HF_ENDPOINT": fake_hub.url,
            "HF_HUB_OFFLINE": "0",
            "HF_HOME": str(tmp_path / "hf-home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        }
    )
    env.pop("HF_HUB_CACHE", None)
    env.pop("HF_TOKEN", None)
    return env
