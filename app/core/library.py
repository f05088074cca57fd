"""The local adapter library: our runs' checkpoints, folders the user adds, downloaded Hub LoRAs.

Every ``.safetensors`` file is described once from its header (:func:`inspect_adapter`)
and remembered in an index keyed by path, size and mtime, so reopening a folder of
thousands of LoRAs only stats them. A file that cannot be used (a pickle, a full
checkpoint, a truncated download) is listed with its problem, never dropped silently.
Search by name, trigger word or tag; filtering by base family keeps the adapters whose
family is unknown (they are marked in the UI instead of hidden).

Files: settings (the folders) in ``<config>/library.toml``; the index in
``<cache>/library/index.json`` (rebuilt when missing); what we know of each Hub
download (repo, card trigger words) in ``<data>/library/hub-downloads.json``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from dataclasses import asdict, dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from app.core import paths
from app.core.adapters import PICKLE_SUFFIXES, AdapterError, inspect_adapter, tag_frequency
from app.core.configs import ConfigError, _Config
from app.core.families import Family
from app.core.files import atomic_write_text

log = logging.getLogger(__name__)

INDEX_VERSION = 1
ADAPTER_SUFFIX = ".safetensors"
TOP_TAGS = 30
SETTINGS_FILE = "library.toml"
_FAMILIES = {f.value for f in Family}


class Source(str, Enum):
    RUN = "run"  # a checkpoint of one of our training runs
    FOLDER = "folder"  # a folder the user added (e.g. A1111 models/Lora)
    HUB = "hub"  # a LoRA in the Hugging Face cache


@dataclass
class LibrarySettings(_Config):
    folders: list[str] = field(default_factory=list)
    include_hub_cache: bool = True

    def validate(self, prefix: str = "") -> None:
        if not isinstance(self.folders, list) or not all(isinstance(f, str) and f.strip() for f in self.folders):
            raise ConfigError(f"{prefix}folders must be a list of folder paths")


@dataclass
class LibraryEntry:
    path: str
    source: Source
    title: str = ""
    family: Family | None = None
    network: str = ""
    layout: str = ""
    rank: int | None = None
    alpha: float | None = None
    parts: list[str] = field(default_factory=list)
    trigger_words: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    preview: str | None = None  # a sidecar picture
    embedded_preview: bool = False  # a cover inside the file (modelspec.thumbnail)
    repo_id: str = ""  # for Hub downloads
    license: str = ""  # as the Hub card states it
    size: int = 0
    mtime_ns: int = 0
    problem: str = ""  # non-empty: listed, marked, cannot be used

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def usable(self) -> bool:
        return not self.problem

    def matches(self, text: str) -> bool:
        """Every word of ``text`` is in the name, title, repo, a trigger word or a tag."""
        hay = " ".join([self.title, self.name, self.repo_id, *self.trigger_words, *self.tags]).lower()
        return all(word in hay for word in text.lower().split())

    def preview_bytes(self) -> bytes | None:
        """The embedded cover picture (read from the file header on demand)."""
        if not self.embedded_preview:
            return None
        try:
            return inspect_adapter(self.path).preview_bytes
        except AdapterError:
            return None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["source"] = self.source.value
        data["family"] = self.family.value if self.family else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LibraryEntry:
        data = dict(data)
        data["source"] = Source(data["source"])
        data["family"] = Family(data["family"]) if data.get("family") else None
        return cls(**data)


@dataclass
class ScanReport:
    entries: list[LibraryEntry]
    inspected: int  # headers read this time
    reused: int  # taken from the index unchanged
    problems: int


def _top_tags(metadata: dict[str, str]) -> list[str]:
    try:
        counts = tag_frequency(metadata)
    except ValueError:  # inspect_adapter refuses such a file; an index entry only loses its tags
        return []
    return [t for t, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:TOP_TAGS] if t]


def describe(
    path: Path, source: Source, hub_record: dict[str, Any] | None = None, root: Path | None = None
) -> LibraryEntry:
    """One file as a library entry; a file that cannot be used gets ``problem`` instead of an error.
    ``root``: the folder the file was found in; a link out of it is refused."""
    try:
        stat = path.stat()
        size, mtime_ns = stat.st_size, stat.st_mtime_ns
    except OSError:  # a dangling link or a link loop: listed with the reason inspect_adapter gives
        size, mtime_ns = 0, 0
    record = hub_record or {}
    repo_id = str(record.get("repo_id") or (_repo_of_cache_path(path) if source is Source.HUB else ""))
    card = {"instance_prompt": record.get("trigger_words") or []}
    base = LibraryEntry(str(path), source, title=path.stem, repo_id=repo_id, size=size, mtime_ns=mtime_ns)
    try:
        info = inspect_adapter(path, card_data=card, root=root)
    except AdapterError as exc:
        base.problem = str(exc)
        return base
    family = info.family or (Family(record["family"]) if record.get("family") in _FAMILIES else None)
    preview = info.preview or (Path(record["preview"]) if record.get("preview") else None)
    if preview is not None and not preview.is_file():
        preview = None
    title = info.title
    if source is Source.HUB and title == path.stem and repo_id:
        title = f"{repo_id.split('/')[-1]} · {path.stem}"
    if source is Source.RUN:
        title, preview = _run_title_and_preview(path, preview)
    return LibraryEntry(
        str(path),
        source,
        title=title,
        family=family,
        network=info.network.value,
        layout=info.layout.value,
        rank=info.rank,
        alpha=info.alpha,
        parts=[p.value for p in info.parts],
        trigger_words=info.trigger_words,
        tags=_top_tags(info.metadata),
        preview=str(preview) if preview else None,
        embedded_preview=info.preview_bytes is not None,
        repo_id=repo_id,
        license=str(record.get("license") or ""),
        size=size,
        mtime_ns=mtime_ns,
    )


_CHECKPOINT_STEP = re.compile(r"-step(\d+)$")


def _run_title_and_preview(path: Path, preview: Path | None) -> tuple[str, Path | None]:
    """A run's adapter is called by its run folder (a second "shapes_a" is shapes_a-2, the name
    History shows), a checkpoint by folder and step; the cover is the run's newest sample picture
    (samples/step000500-0.png: zero-padded, so name order is step order) unless a sidecar exists."""
    run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    found = _CHECKPOINT_STEP.search(path.stem)
    title = f"{run.name} · step {int(found.group(1))}" if found else run.name
    if preview is None:
        samples = (
            sorted(p for p in (run / "samples").glob("step*.png") if p.is_file()) if (run / "samples").is_dir() else []
        )
        if samples:
            newest_step = samples[-1].name.split("-")[0]
            preview = next(p for p in samples if p.name.split("-")[0] == newest_step)
    return title, preview


def _repo_of_cache_path(path: Path) -> str:
    for part in path.parts:
        if part.startswith("models--"):
            return part[len("models--") :].replace("--", "/")
    return ""


def _walk(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files under ``root`` with one of ``suffixes``, skipping hidden folders; unreadable folders are skipped."""
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, onerror=lambda e: log.warning("cannot read %s", e.filename)):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder) / f for f in files if f.lower().endswith(suffixes) and not f.startswith(".")]
    return found


class Library:
    """The adapters on this machine. ``refresh()`` does disk work: call it off the GUI thread."""

    def __init__(
        self,
        *,
        settings_path: str | Path | None = None,
        index_path: str | Path | None = None,
        records_path: str | Path | None = None,
        runs_dir: str | Path | None = None,
        hub_cache: str | Path | None = None,
    ) -> None:
        self.settings_path = Path(settings_path or paths.config_dir() / SETTINGS_FILE)
        self.index_path = Path(index_path or paths.cache_dir() / "library" / "index.json")
        self.records_path = Path(records_path or paths.data_dir() / "library" / "hub-downloads.json")
        self.runs_dir = Path(runs_dir or paths.runs_dir())
        self._hub_cache = Path(hub_cache).expanduser().resolve() if hub_cache else None
        self._lock = threading.RLock()
        self._entries: list[LibraryEntry] = []
        self.settings = self._load_settings()

    # -------------------------------------------------------- settings

    def _load_settings(self) -> LibrarySettings:
        if not self.settings_path.exists():
            return LibrarySettings()
        try:
            return LibrarySettings.load_toml(self.settings_path)
        except ConfigError as exc:
            log.warning("ignoring the library settings: %s", exc)
            return LibrarySettings()

    @property
    def hub_cache(self) -> Path:
        if self._hub_cache is None:
            from huggingface_hub import constants

            self._hub_cache = Path(constants.HF_HUB_CACHE).expanduser().resolve()
        return self._hub_cache

    @property
    def folders(self) -> list[Path]:
        return [Path(f) for f in self.settings.folders]

    def add_folder(self, folder: str | Path) -> Path:
        """Remember a folder of adapters (call :meth:`refresh` to read it); raises ValueError with the reason."""
        p = Path(folder).expanduser()
        if not p.is_dir():
            raise ValueError(f"{p}: not a folder")
        p = p.resolve()
        with self._lock:
            if str(p) not in self.settings.folders:
                self.settings.folders.append(str(p))
                self.settings.save_toml(self.settings_path)
        return p

    def remove_folder(self, folder: str | Path) -> None:
        with self._lock:
            self.settings.folders = [f for f in self.settings.folders if Path(f) != Path(folder)]
            self.settings.save_toml(self.settings_path)

    # -------------------------------------------------------- Hub download records

    def _records(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.records_path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("ignoring %s: %s", self.records_path, exc)
            return {}

    def record_download(
        self,
        path: str | Path,
        *,
        repo_id: str,
        trigger_words: list[str] | None = None,
        family: Family | None = None,
        license: str = "",
        sha256: str | None = None,
        preview: str | Path | None = None,
    ) -> LibraryEntry:
        """Remember what the Hub said about a downloaded file and add it to the library at once."""
        p = Path(path)
        record = {
            "repo_id": repo_id,
            "trigger_words": list(trigger_words or []),
            "family": family.value if family else None,
            "license": license,
            "sha256": sha256,
            "preview": str(preview) if preview else None,
        }
        with self._lock:
            records = self._records()
            records[str(p)] = record
            atomic_write_text(self.records_path, json.dumps(records, indent=1, sort_keys=True))
            source = Source.HUB if _inside(p, self.hub_cache) else Source.FOLDER
            entry = describe(p, source, record)
            self._entries = sorted([e for e in self._entries if e.path != entry.path] + [entry], key=_sort_key)
            self._save_index(self._entries)
        return entry

    # -------------------------------------------------------- scanning

    def _candidates(self, records: dict[str, dict[str, Any]]) -> list[tuple[Path, Source, Path | None]]:
        """(file, source, the folder it must stay inside) for every adapter file to list."""
        found: dict[str, tuple[Path, Source, Path | None]] = {}
        if self.runs_dir.is_dir():
            for run in sorted(self.runs_dir.iterdir()):
                if run.is_dir():
                    files = [f for f in run.iterdir() if f.suffix.lower() == ADAPTER_SUFFIX and f.is_file()]
                    if (run / "checkpoints").is_dir():
                        files += _walk(run / "checkpoints", (ADAPTER_SUFFIX,))
                    found.update({str(f): (f, Source.RUN, self.runs_dir) for f in files})
        for folder in self.folders:
            if not folder.is_dir():
                log.warning("library folder %s is missing; skipped", folder)
                continue
            for f in _walk(folder, (ADAPTER_SUFFIX, *PICKLE_SUFFIXES)):
                found.setdefault(str(f), (f, Source.FOLDER, folder))
        if self.settings.include_hub_cache and self.hub_cache.is_dir():
            for f in self._hub_files():
                found.setdefault(str(f), (f, Source.HUB, self.hub_cache))
        for path in records:  # downloads outside the cache folder we scan (another HF_HUB_CACHE)
            p = Path(path)
            if path not in found and p.is_file():
                found[path] = (p, Source.HUB, None)  # a download the user placed there
        return list(found.values())

    def _hub_files(self) -> list[Path]:
        """``.safetensors`` in the HF cache, one per repo file: the snapshot ``refs/`` points at, else the newest."""
        best: dict[tuple[str, str], tuple[bool, float, Path]] = {}
        for repo in self.hub_cache.glob("models--*"):
            refs = set()
            if (repo / "refs").is_dir():
                refs = {
                    r.read_text(encoding="utf-8", errors="replace").strip()
                    for r in (repo / "refs").iterdir()
                    if r.is_file()
                }
            for snap in (repo / "snapshots").glob("*") if (repo / "snapshots").is_dir() else []:
                for f in _walk(snap, (ADAPTER_SUFFIX,)):
                    try:
                        mtime = f.stat().st_mtime
                    except OSError:
                        continue  # a link to a blob that is gone
                    key = (repo.name, str(f.relative_to(snap)))
                    rank = (snap.name in refs, mtime, f)
                    if key not in best or rank[:2] > best[key][:2]:
                        best[key] = rank
        return [v[2] for v in best.values()]

    def _load_index(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
            if data.get("version") == INDEX_VERSION and isinstance(data.get("files"), dict):
                return data["files"]
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
            log.warning("rebuilding the library index (%s)", exc)
        return {}

    def _save_index(self, entries: list[LibraryEntry]) -> None:
        data = {"version": INDEX_VERSION, "files": {e.path: e.to_json() for e in entries}}
        try:
            atomic_write_text(self.index_path, json.dumps(data, separators=(",", ":")))
        except OSError as exc:
            log.warning("could not save the library index %s: %s", self.index_path, exc)

    def refresh(self) -> ScanReport:
        """Find the adapter files and describe the new or changed ones; the rest come from the index."""
        with self._lock:
            records = self._records()
            index = self._load_index()
            entries: list[LibraryEntry] = []
            inspected = reused = 0
            for path, source, root in self._candidates(records):
                try:
                    stat = path.stat()
                except OSError:
                    stat = None  # a dangling link or a link loop: describe() lists it with the reason
                old = index.get(str(path))
                record = records.get(str(path))
                if (
                    old
                    and stat is not None
                    and old.get("size") == stat.st_size
                    and old.get("mtime_ns") == stat.st_mtime_ns
                    and old.get("source") == source.value
                ):
                    try:
                        entries.append(LibraryEntry.from_json(old))
                        reused += 1
                        continue
                    except (KeyError, TypeError, ValueError):
                        pass
                entry = describe(path, source, record, root)
                inspected += 1
                if source is Source.HUB and entry.problem and record is None:
                    continue  # full models and other non-LoRA files in the HF cache are not ours to list
                entries.append(entry)
            entries.sort(key=_sort_key)
            self._entries = entries
            if inspected or len(entries) != len(index):
                self._save_index(entries)
            return ScanReport(list(entries), inspected, reused, sum(1 for e in entries if e.problem))

    # -------------------------------------------------------- queries

    @property
    def entries(self) -> list[LibraryEntry]:
        with self._lock:
            return list(self._entries)

    def get(self, path: str | Path) -> LibraryEntry | None:
        with self._lock:
            return next((e for e in self._entries if e.path == str(path)), None)

    def search(self, text: str = "", family: Family | None = None) -> list[LibraryEntry]:
        """Entries matching every word of ``text``; with ``family``, those of that family or unknown."""
        return [
            e
            for e in self.entries
            if (not text.strip() or e.matches(text)) and (family is None or e.family in (family, None))
        ]


def _sort_key(entry: LibraryEntry) -> tuple[bool, str, str]:
    return (bool(entry.problem), entry.title.lower(), entry.path)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except (ValueError, OSError):
        return False
    return True
