"""Helpers for training tests: small solid-colour datasets and short configs on tiny models."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

from PIL import Image

RED = (220, 30, 30)


def write_images(folder: Path, colour=RED, caption: str | None = "sks", sizes=((64, 64),) * 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate(sizes):
        Image.new("RGB", size, colour).save(folder / f"img{i}.png")
        if caption is not None:
            (folder / f"img{i}.txt").write_text(caption, encoding="utf-8")
    return folder


def small_config(base: Path, dataset: Path, **overrides):
    """A TrainConfig for tiny models: 64 px, rank 4, a few steps, no samples unless asked."""
    from app.core.train_config import TrainConfig, merge

    data = {
        "name": "red",
        "base": str(base),
        "trigger": "sks",
        "seed": 7,
        "steps": 4,
        "datasets": [{"path": str(dataset)}],
        "data": {
            "resolution": 64,
            "min_bucket": 64,
            "max_bucket": 128,
            "min_image_side": 32,
            "batch_size": 2,
            "caption_dropout": 0.0,
        },
        "network": {"rank": 4, "alpha": 4.0},
        "optimizer": {"learning_rate": 1e-3, "schedule": "constant"},
        "output": {"save_every": 2, "keep_last": 2},
        "sample": {"every": 0, "prompts": [], "steps": 2},
    }
    return TrainConfig.from_dict(merge(data, overrides), where="test config")


def fail_writes_half_way(monkeypatch, when=lambda: True) -> None:
    """Make atomic writes (app.core.files) write half their bytes and then get Ctrl+C."""
    import os

    import app.core.files as files

    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            self.fh.write(data[: len(data) // 2])
            raise KeyboardInterrupt

        def __getattr__(self, name):
            return getattr(self.fh, name)

    class FailingOs:
        def __getattr__(self, name):
            return getattr(os, name)

        def fdopen(self, fd, *args, **kwargs):
            fh = real_fdopen(fd, *args, **kwargs)
            return HalfWriter(fh) if when() else fh

    monkeypatch.setattr(files, "os", FailingOs())


def write_undecodable_png(path: Path) -> None:
    """A PNG whose chunks are all whole (right CRCs, IEND present), so the dataset scan passes it,
    but whose compressed picture data is garbage: only decoding finds out."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (10, 200, 10)).save(buf, format="PNG")
    data, out, pos = buf.getvalue(), bytearray(buf.getvalue()[:8]), 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        if kind == b"IDAT":
            body = bytes(range(256)) * 2
        out += struct.pack(">I4s", len(body), kind) + body + struct.pack(">I", zlib.crc32(kind + body))
        pos += 12 + length
    path.write_bytes(bytes(out))


class PicklePayload:
    """Unpickling this creates the marker file: proof that code from the run folder ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def warnings_in(events) -> list[str]:
    """The sentences of the WARNING log lines among a run's typed events."""
    from app.core.events import LogLevel, LogLine

    return [e.message for e in events if isinstance(e, LogLine) and e.level is LogLevel.WARNING]


def trained_to(events, step: int) -> bool:
    """Whether the events report training step ``step`` done (a Progress of the training phase)."""
    from app.core.events import Phase, Progress

    return any(isinstance(e, Progress) and e.phase is Phase.TRAINING and e.step == step for e in events)
