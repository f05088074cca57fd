"""The debug report: ``loraloom doctor --report FILE.zip`` and the GUI's Help > Report a problem.

The one place that decides what goes in (versions, device, the doctor's lines, settings,
the last log lines, config files) and what never does: Hub tokens (from HF_TOKEN, the
token files, anything shaped like one) and the home folder's path (replaced by ``~``).
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from collections.abc import Iterable
from pathlib import Path

from app.core import paths, versions, worker_env
from app.core.doctor import Check
from app.core.files import atomic_write_bytes

LOG_TAIL_BYTES = 256 * 1024  # the end of each log file is what explains a problem
CONFIG_SUFFIXES = (".toml", ".ini", ".json", ".txt")
TOKEN_ENV = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_API_TOKEN")
# Hub user tokens look like hf_ followed by 30+ letters; org/api tokens like api_org_...
TOKEN_PATTERN = re.compile(r"\b(?:hf|api_org)_[A-Za-z0-9]{16,}\b")
REDACTED = "<redacted>"


def known_tokens() -> list[str]:
    """Every token this machine holds for the Hub, to be cut out wherever it appears."""
    tokens = [os.environ.get(name, "") for name in TOKEN_ENV]
    try:
        from huggingface_hub import constants

        token_files = [Path(constants.HF_TOKEN_PATH), Path(constants.HF_STORED_TOKENS_PATH)]
    except ImportError:
        token_files = []
    for file in token_files:
        try:
            text = file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():  # "token" holds one; "stored_tokens" is name = token lines
            value = line.split("=", 1)[-1].strip()
            if value and not value.startswith("["):
                tokens.append(value)
    return sorted({t.strip() for t in tokens if len(t.strip()) >= 8}, key=len, reverse=True)


def home_paths() -> list[str]:
    homes = {str(Path.home()), os.path.expanduser("~")}
    try:
        homes.add(str(Path.home().resolve()))
    except OSError:
        pass
    return sorted((h for h in homes if h not in ("", "/")), key=len, reverse=True)


def redact(text: str, tokens: Iterable[str] | None = None, homes: Iterable[str] | None = None) -> str:
    for token in tokens if tokens is not None else known_tokens():
        text = text.replace(token, REDACTED)
    text = TOKEN_PATTERN.sub(REDACTED, text)
    for home in homes if homes is not None else home_paths():
        text = text.replace(home, "~")
    return text


def report_text(checks: list[Check], app_version: str, hello: dict | None = None) -> str:
    """The report's summary, as copied to the clipboard (not yet redacted)."""
    lines = [versions.version_text(app_version)]
    if hello:
        fields = ", ".join(f"{k} {hello.get(k)}" for k in ("device", "cuda_name", "torch", "diffusers") if hello.get(k))
        lines.append(f"running worker: {fields}")
    lines += [f"data folder: {paths.data_dir()}", f"config folder: {paths.config_dir()}", ""]
    lines += [check.render() for check in checks]
    return "\n".join(lines) + "\n"


def _read_tail(path: Path, limit: int) -> str:
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - limit))
        return fh.read().decode("utf-8", errors="replace")


def _files(folder: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Regular files directly in ``folder`` (no link is followed: it could point anywhere)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in suffixes and p.is_file() and not p.is_symlink())


def report_files() -> dict[str, str]:
    """Archive name -> text for settings, config files and the last log lines (not yet redacted)."""
    out: dict[str, str] = {}
    for path in _files(paths.config_dir(), CONFIG_SUFFIXES):
        out[f"config/{path.name}"] = _read_tail(path, LOG_TAIL_BYTES)
    for path in _files(paths.log_dir(), (".log", ".txt")):
        out[f"logs/{path.name}"] = _read_tail(path, LOG_TAIL_BYTES)
    settings = worker_env.settings_path()
    if settings.is_file() and f"config/{settings.name}" not in out:
        out[f"config/{settings.name}"] = _read_tail(settings, LOG_TAIL_BYTES)
    return out


def build_zip(summary: str, extra: dict[str, str] | None = None) -> bytes:
    """The zip's bytes: report.txt plus the files, every text redacted once, here."""
    tokens, homes = known_tokens(), home_paths()
    files = {"report.txt": summary, **report_files(), **(extra or {})}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(redact(name, tokens, homes), redact(text, tokens, homes))
    return buffer.getvalue()


def write_report(path: Path, summary: str, extra: dict[str, str] | None = None) -> Path:
    """Write the zip atomically; ``extra`` adds texts such as the GUI's log panel."""
    path = Path(path)
    if path.suffix.lower() != ".zip":
        path = path.with_suffix(path.suffix + ".zip")
    atomic_write_bytes(path, build_zip(summary, extra))
    return path
