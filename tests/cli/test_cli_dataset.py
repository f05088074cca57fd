"""``loraloom dataset check``: the scan as a report, exit code by usability."""

from __future__ import annotations

import json

from dataset_files import make_bad_dataset, make_good_dataset

from app.cli import main


def test_check_text_report_names_every_problem_file(tmp_path, capsys):
    expect = make_bad_dataset(tmp_path / "ds")
    assert main(["dataset", "check", str(tmp_path / "ds")]) == 0
    out = capsys.readouterr().out
    assert "24 images: 15 usable, 9 unusable" in out
    for rel, kind in expect.items():
        if kind is not None and kind.value != "caption_not_utf8" and kind.value != "caption_shared":
            assert f"{rel}:" in out, rel
    assert "10_mychar: 10 × 1 images" in out
    assert "[UNUSABLE]" in out and "decompression bomb" in out


def test_check_json_has_counts_problems_repeats_and_tags(tmp_path, capsys):
    make_bad_dataset(tmp_path / "ds")
    assert main(["dataset", "check", str(tmp_path / "ds"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == 24 and report["usable"] == 15
    assert report["problem_counts"]["truncated"] == 3
    assert report["repeats"]["10_mychar"] == {"repeats": 10, "images": 1}
    by_path = {f["path"]: f for f in report["files"]}
    assert by_path["zero.png"]["problems"][0]["kind"] == "zero_bytes" and not by_path["zero.png"]["usable"]
    assert {"tag": "twin", "count": 2} in report["tags"]


def test_check_exit_codes(tmp_path, capsys):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"")
    assert main(["dataset", "check", str(tmp_path / "broken")]) == 1
    assert "nothing here can be used" in capsys.readouterr().out
    assert main(["dataset", "check", str(tmp_path / "missing")]) == 1
    assert "no such folder" in capsys.readouterr().err
    make_good_dataset(tmp_path / "ok", count=2, size=(64, 64))
    assert main(["dataset", "check", str(tmp_path / "ok")]) == 1, "too small at the default 256"
    assert main(["dataset", "check", str(tmp_path / "ok"), "--min-side", "64"]) == 0


def test_check_json_into_a_reader_that_stops_early_exits_quietly(tmp_path):
    """``loraloom dataset check --json | head``: no BrokenPipeError traceback when head stops reading."""
    import subprocess
    import sys

    (tmp_path / "ds").mkdir()
    for i in range(400):  # a report well over a pipe's buffer, so the write meets the closed pipe
        (tmp_path / "ds" / f"broken_{i:03d}.png").write_bytes(b"x")
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "dataset", "check", str(tmp_path / "ds"), "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout.read(2) == b"{\n"
    proc.stdout.close()  # what head does after its lines
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert err == "" and proc.returncode == 141
