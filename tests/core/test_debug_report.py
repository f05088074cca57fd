"""The debug report zip: what a user sends us must hold no token and no home path."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from app.core import debug_report, paths

ROOT = Path(__file__).resolve().parents[2]
ENV_TOKEN = "hf_EnvTokenAbcdefghijklmnopqrstuv"
FILE_TOKEN = "hf_FileTokenZyxwvutsrqponmlkjihg"
ODD_TOKEN = "not-shaped-like-a-hub-token-42"  # only known because it is in the token file


@pytest.fixture
def planted(tmp_path, monkeypatch) -> dict[str, str]:
    """A home with a token in HF_TOKEN, token files, and both leaked into config and log files."""
    home = tmp_path / "home" / "someone"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("LORALOOM_HOME", str(home / "loraloom"))
    monkeypatch.setenv("HF_TOKEN", ENV_TOKEN)
    hf_home = home / ".cache" / "huggingface"
    hf_home.mkdir(parents=True)
    (hf_home / "token").write_text(FILE_TOKEN, encoding="utf-8")
    (hf_home / "stored_tokens").write_text(f"[work]\nhf_token = {ODD_TOKEN}\n", encoding="utf-8")
    monkeypatch.setenv("HF_HOME", str(hf_home))  # for the subprocess
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(hf_home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(hf_home / "stored_tokens"))
    config = paths.config_dir()
    config.mkdir(parents=True)
    (config / "library.toml").write_text(
        f'folders = ["{home}/loras"]\ntoken = "{FILE_TOKEN}"\nnote = "{ODD_TOKEN}"\n', encoding="utf-8"
    )
    logs = paths.log_dir()
    logs.mkdir(parents=True)
    (logs / "loraloom.log").write_text(f"loaded {home}/models/x.safetensors with {ENV_TOKEN}\n", encoding="utf-8")
    return {"home": str(home)}


def _all_text(zip_path: Path) -> dict[str, str]:
    with zipfile.ZipFile(zip_path) as archive:
        return {name: archive.read(name).decode("utf-8") for name in archive.namelist()}


def _assert_clean(texts: dict[str, str], home: str) -> None:
    blob = "\n".join(list(texts) + list(texts.values()))
    for secret in (ENV_TOKEN, FILE_TOKEN, ODD_TOKEN, home):
        assert secret not in blob


def test_the_report_zip_holds_no_token_and_no_home_path(planted, tmp_path):
    summary = debug_report.report_text([], "0.1.0")
    assert planted["home"] in summary  # the raw summary names the folders...
    written = debug_report.write_report(tmp_path / "report.zip", summary, {"gui-log.txt": f"{ENV_TOKEN} x"})
    texts = _all_text(written)
    assert {"report.txt", "config/library.toml", "logs/loraloom.log", "gui-log.txt"} <= set(texts)
    _assert_clean(texts, planted["home"])  # ...the zip does not
    assert 'folders = ["~/loras"]' in texts["config/library.toml"]
    assert "data folder: ~/" in texts["report.txt"]
    assert texts["logs/loraloom.log"] == "loaded ~/models/x.safetensors with <redacted>\n"


def test_doctor_report_command_writes_a_clean_zip(planted, tmp_path):
    target = tmp_path / "out" / "problem"
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "doctor", "--report", str(target)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    written = target.with_suffix(".zip")
    assert f"debug report written to {written} (tokens and home paths removed)" in out.stdout, out.stderr
    texts = _all_text(written)
    assert (
        "[  ok] Python and OS" in texts["report.txt"]
        and "Hub: not contacted (offline mode); a token is stored" in texts["report.txt"]
    )
    _assert_clean(texts, planted["home"])


def test_a_report_that_cannot_be_written_is_one_sentence(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("", encoding="utf-8")
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "doctor", "--report", str(blocker / "r.zip")],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert (
        out.stderr.strip()
        .splitlines()[-1]
        .startswith(f"loraloom: error: {blocker / 'r.zip'}: could not write the report")
    )


def test_links_out_of_the_config_folder_are_not_followed(planted, tmp_path):
    secret = tmp_path / "elsewhere.toml"
    secret.write_text("private = 1\n", encoding="utf-8")
    (paths.config_dir() / "link.toml").symlink_to(secret)
    assert "config/link.toml" not in debug_report.report_files()
