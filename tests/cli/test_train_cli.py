"""``loraloom train``: bad configs give one sentence and exit 1; a good one trains and resumes."""

from __future__ import annotations

import re

import pytest

from app.cli import main


def _write(tmp_path, text: str):
    path = tmp_path / "run.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _good(base, dataset) -> str:
    return (
        f'name = "cli"\nbase = "{base}"\nsteps = 2\n[[datasets]]\npath = "{dataset}"\n'
        "[data]\nresolution = 64\nmin_bucket = 64\nmax_bucket = 128\nmin_image_side = 32\n"
        "[network]\nrank = 2\n[output]\nsave_every = 1\n[sample]\nevery = 0\n"
    )


@pytest.mark.parametrize(
    "case, needle",
    [
        ("unknown key", "unknown key 'stpes'"),
        ("wrong type", "steps must be a whole number, not 'ten'"),
        ("missing dataset", "no-such-folder: no such folder"),
        ("no usable image", "no usable training picture: 1 picture(s) found, none usable"),
        ("missing base model", "no-such-model: no such file or folder"),
        ("resolution", "[data]: resolution = 500 must be a multiple of 64"),
        ("rank 0", "[network]: rank = 0 must be between 1 and 1024"),
        ("no dataset table", "no dataset: add a [[datasets]] table"),
    ],
)
def test_a_bad_config_is_one_clear_line_and_no_traceback(case, needle, tmp_path, tiny_sd1, red_dataset, capsys):
    text = _good(tiny_sd1, red_dataset)
    if case == "unknown key":
        text = "stpes = 3\n" + text
    elif case == "wrong type":
        text = text.replace("steps = 2", 'steps = "ten"')
    elif case == "missing dataset":
        text = text.replace(str(red_dataset), str(tmp_path / "no-such-folder"))
    elif case == "no usable image":
        (tmp_path / "junk").mkdir()
        (tmp_path / "junk" / "photo.png").write_text("this is not a picture", encoding="utf-8")
        text = text.replace(str(red_dataset), str(tmp_path / "junk"))
    elif case == "missing base model":
        text = text.replace(str(tiny_sd1), str(tmp_path / "no-such-model"))
    elif case == "resolution":
        text = text.replace("resolution = 64", "resolution = 500")
    elif case == "rank 0":
        text = text.replace("rank = 2", "rank = 0")
    elif case == "no dataset table":
        text = text.replace(f'[[datasets]]\npath = "{red_dataset}"\n', "")
    code = main(["train", str(_write(tmp_path, text))])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 1
    assert len(lines) == 1 and lines[0].startswith("loraloom: error: "), err
    assert needle in lines[0]
    assert "Traceback" not in err


def test_train_then_resume_with_more_steps(tmp_path, tiny_sd1, red_dataset, capsys):
    config = _write(tmp_path, _good(tiny_sd1, red_dataset))
    assert main(["train", str(config)]) == 0
    out = capsys.readouterr()
    assert re.search(r"cache: 100%.*\| 4/4 \[", out.err), out.err  # the latent bar counts the 4 pictures
    final = out.out.strip().splitlines()[-1]
    assert final.endswith("cli.safetensors")
    run_dir = next(line.split(": ", 1)[1] for line in out.err.splitlines() if line.startswith("run folder: "))
    config.write_text(_good(tiny_sd1, red_dataset).replace("steps = 2", "steps = 3"), encoding="utf-8")
    assert main(["train", str(config), "--resume", run_dir]) == 0
    err = capsys.readouterr().err
    assert "resuming" in err and "at step 2" in err
    changed = _good(tiny_sd1, red_dataset).replace("rank = 2", "rank = 8")
    config.write_text(changed, encoding="utf-8")
    assert main(["train", str(config), "--resume", run_dir]) == 1
    assert "cannot resume with a different 'network'" in capsys.readouterr().err
    assert main(["train"]) == 1
    assert "give a config file" in capsys.readouterr().err


def test_cli_train_reports_each_skipped_picture_once(tmp_path, tiny_sd1, red_dataset):
    """A real process: pytest's log capture would hide a second, logged copy of the line."""
    import shutil
    import subprocess
    import sys

    dataset = tmp_path / "data"
    shutil.copytree(red_dataset, dataset)
    (dataset / "2_sks" / "broken.png").write_bytes(b"not a picture")
    text = _good(tiny_sd1, dataset).replace("steps = 2", "steps = 1")
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "train", str(_write(tmp_path, text))],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("broken.png") == 1, done.stderr


@pytest.mark.slow
def test_train_prints_the_validation_losses_and_the_best_checkpoint(tmp_path, tiny_sd1, red_dataset, capsys):
    text = _good(tiny_sd1, red_dataset) + "[validation]\nimages = 1\nevery = 1\n"
    assert main(["train", str(_write(tmp_path, text))]) == 0
    err = capsys.readouterr().err
    losses = {int(s): float(v) for v, s in re.findall(r"validation loss (\d+\.\d+) at step (\d+)", err)}
    assert sorted(losses) == [1, 2]
    best = min(losses, key=losses.get)
    found = re.search(r"best by validation loss: (\S+\.safetensors) \(step (\d+), validation loss (\d+\.\d+)\)", err)
    assert found is not None, err
    assert int(found.group(2)) == best and float(found.group(3)) == pytest.approx(losses[best], abs=1e-4)
