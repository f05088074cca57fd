"""One bad picture never sinks a run: skipped with a warning, listed in the log and summary;
a start that fails leaves no empty run folder behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from train_helpers import small_config, warnings_in, write_images, write_undecodable_png

from app.core import paths
from app.core.events import Phase, Progress
from app.engine.training import TrainError, train

pytestmark = pytest.mark.slow


def test_an_undecodable_picture_is_skipped_with_a_warning_and_listed(tiny_sd1, tmp_path):
    folder = write_images(tmp_path / "ds" / "1_sks", sizes=((64, 64),) * 3)
    bad = folder / "broken.png"
    write_undecodable_png(bad)
    events = []
    result = train(small_config(tiny_sd1, tmp_path / "ds", name="skip", steps=2), on_event=events.append)
    assert result.status == "done"
    warnings = warnings_in(events)
    assert len(warnings) == 1 and warnings[0].startswith(f"skipped {bad}: the image cannot be decoded")
    assert result.skipped == [warnings[0][len("skipped ") :]]
    notes = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [n["skipped"] for n in notes if "skipped" in n] == result.skipped


def test_a_picture_deleted_while_caching_is_skipped(tiny_sd1, tmp_path):
    folder = write_images(tmp_path / "ds" / "1_sks", sizes=((64, 64),) * 3)
    doomed = folder / "img2.png"
    events = []

    def on_event(event):
        events.append(event)
        if isinstance(event, Progress) and event.phase is Phase.CACHING and event.step == 1:
            doomed.unlink()

    result = train(small_config(tiny_sd1, tmp_path / "ds", name="gone", steps=1), on_event=on_event)
    assert result.status == "done"
    assert result.skipped == [f"{doomed}: cannot be read any more (No such file or directory)"]


def test_no_usable_picture_left_refuses_and_leaves_no_empty_run_folder(tiny_sd1, tmp_path):
    folder = tmp_path / "ds" / "1_sks"
    folder.mkdir(parents=True)
    write_undecodable_png(folder / "a.png")
    with pytest.raises(
        TrainError,
        match=r"^no usable training picture left: 1 picture\(s\) could not be read "
        r"\(first: .*a\.png: the image cannot be decoded",
    ):
        train(small_config(tiny_sd1, tmp_path / "ds", name="empty", steps=1))
    assert not (paths.runs_dir() / "empty").exists()
    write_images(folder, sizes=((64, 64),))
    again = train(small_config(tiny_sd1, tmp_path / "ds", name="empty", steps=1))
    assert again.run_dir.name == "empty"  # not "empty-2"


def test_the_cli_prints_each_skipped_picture_once_and_counts_them_at_the_end(tiny_sd1, tmp_path, loraloom_home):
    dataset = write_images(tmp_path / "ds" / "1_sks", sizes=((64, 64),) * 2).parent
    (dataset / "1_sks" / "junk.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)  # fails the header scan
    config = tmp_path / "run.toml"
    config.write_text(
        f'name = "cli"\nbase = "{tiny_sd1}"\nsteps = 1\n[[datasets]]\npath = "{dataset}"\n'
        "[data]\nresolution = 64\nmin_bucket = 64\nmax_bucket = 128\nmin_image_side = 32\n"
        "[network]\nrank = 2\n[output]\nsave_every = 0\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "train", str(config)],
        capture_output=True,
        text=True,
        env={**os.environ, "LORALOOM_HOME": str(loraloom_home)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("junk.png") == 1
    assert "1 picture(s) skipped (listed above and in " in done.stderr


@pytest.fixture
def diffusers_log():
    """The messages diffusers logs, with its warnings on as for a user (the suite turns them off)."""
    import logging

    from diffusers.utils import logging as diffusers_logging

    class Recorder(logging.Handler):
        def __init__(self):
            super().__init__()
            self.messages = []

        def emit(self, record):
            self.messages.append(record.getMessage())

    before, recorder = diffusers_logging.get_verbosity(), Recorder()
    diffusers_logging.set_verbosity_warning()
    logging.getLogger("diffusers").addHandler(recorder)
    yield recorder.messages
    logging.getLogger("diffusers").removeHandler(recorder)
    diffusers_logging.set_verbosity(before)


def test_a_long_caption_is_cut_with_a_warning_and_makes_no_huge_log_line(tiny_sd1, tmp_path, diffusers_log):
    # 60,000 characters: under the 64 KB cap of the dataset scan (a 1 MB caption is refused
    # there, see tests/core/test_hostile_files.py), far over what the text encoder reads.
    folder = write_images(tmp_path / "ds" / "1_sks", sizes=((64, 64),) * 2)
    long = ", ".join(f"tag{i % 5000}" for i in range(120_000))[:60_000]
    (folder / "img0.txt").write_text(long, encoding="utf-8")
    events = []
    result = train(
        small_config(tiny_sd1, tmp_path / "ds", name="long", steps=2, data={"shuffle_tags": True}),
        on_event=events.append,
    )
    assert result.status == "done"
    assert warnings_in(events) == [
        f"{folder / 'img0.png'}: the caption has 60,000 characters; only the first 2,000 are used "
        "(the text encoder reads about 77 tokens)"
    ]
    cut = [m for m in diffusers_log if "truncated" in m]  # diffusers logs the part the tokenizer cut off
    assert cut and max(len(m) for m in cut) < 10_000
