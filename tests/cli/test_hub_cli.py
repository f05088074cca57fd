"""``loraloom hub search|download`` and ``loraloom library list`` as a user runs them (subprocesses).

The subprocesses get HF_ENDPOINT (the fake Hub), HF_HUB_OFFLINE=0 and their own HF_HOME,
read by huggingface_hub at import exactly as on a user's machine.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from fake_hub import TOKEN


def loraloom(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_hub_search_filters_sorts_and_limits(subprocess_env, fake_hub):
    out = loraloom(subprocess_env, "hub", "search", "--base", "sdxl", "--sort", "downloads")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["bob/sdxl-pixel-lora", "dave/gated-sdxl-lora"]
    assert "sdxl" in lines[0] and "[pixel art, 8-bit]" in lines[0] and "(gated)" in lines[1]

    as_json = loraloom(subprocess_env, "hub", "search", "--sort", "likes", "--limit", "2", "--json")
    assert as_json.returncode == 0, as_json.stderr
    repos = json.loads(as_json.stdout)
    assert [r["repo_id"] for r in repos] == ["carol/sd1-ink-lora", "alice/red-style-lora"]
    assert repos[1]["family"] == "sd1" and repos[1]["trigger_words"] == ["zzred style"]

    bad = loraloom(subprocess_env, "hub", "search", "--base", "sd9")
    assert bad.returncode == 1 and "--base" in bad.stderr and "Traceback" not in bad.stderr


def test_hub_download_then_library_list(subprocess_env, fake_hub, tmp_path):
    out = loraloom(subprocess_env, "hub", "download", "alice/red-style-lora")
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip().splitlines()[-1])
    hub_cache = Path(subprocess_env["HF_HOME"]) / "hub"
    assert path.is_relative_to(hub_cache / "models--alice--red-style-lora" / "snapshots")
    assert path.read_bytes() == fake_hub.repos["alice/red-style-lora"].files["red-style.safetensors"].data
    assert "trigger words: zzred style" in out.stderr

    listing = loraloom(subprocess_env, "library", "list", "--json")
    assert listing.returncode == 0, listing.stderr
    entries = json.loads(listing.stdout)
    assert [(e["repo_id"], e["family"], e["trigger_words"], e["source"]) for e in entries] == [
        ("alice/red-style-lora", "sd1", ["zzred style"], "hub")
    ]
    plain = loraloom(subprocess_env, "library", "list")
    assert "zzred style" in plain.stdout and str(path) in plain.stdout

    gets = len(fake_hub.gets_of("red-style.safetensors"))
    again = loraloom(subprocess_env, "hub", "download", "alice/red-style-lora", "--file", "red-style.safetensors")
    assert again.returncode == 0 and Path(again.stdout.strip().splitlines()[-1]) == path
    assert len(fake_hub.gets_of("red-style.safetensors")) == gets  # a cache hit

    # The Hub is gone: the cached file is still there for the same command.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = dict(subprocess_env, HF_ENDPOINT=f"http://127.0.0.1:{port}")
    offline = loraloom(down, "hub", "download", "alice/red-style-lora", "--file", "red-style.safetensors")
    assert offline.returncode == 0, offline.stderr
    assert Path(offline.stdout.strip().splitlines()[-1]) == path
    failed = loraloom(down, "hub", "search", "style")
    assert failed.returncode == 1 and "cannot reach the Hub" in failed.stderr and "Traceback" not in failed.stderr


def test_hub_download_errors_are_one_line(subprocess_env, fake_hub):
    cases = {
        ("nobody/nothing",): "no such repo",
        ("alice/red-style-lora", "--file", "nope.safetensors"): "no such file",
        ("dave/gated-sdxl-lora",): "gated",
        ("eve/hostile-names", "--file", "../../escape.safetensors"): "outside the download folder",
        ("frank/full-model",): "not a LoRA adapter",  # its header says so: refused before the download
    }
    for args, words in cases.items():
        out = loraloom(subprocess_env, "hub", "download", *args)
        last = out.stderr.strip().splitlines()[-1]
        assert out.returncode == 1 and last.startswith("loraloom: error: ") and words in last, (args, out.stderr)
        assert "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr  # no progress bar before a refusal


def test_hub_download_of_a_repo_without_a_lora_refuses_before_downloading(subprocess_env, fake_hub):
    out = loraloom(subprocess_env, "hub", "download", "frank/full-model")
    assert out.returncode == 1 and out.stderr.strip() == (
        "loraloom: error: frank/full-model/model.safetensors: not a LoRA adapter (none of its 2 tensors is a "
        "LoRA weight); nothing was downloaded"
    )
    gets = fake_hub.gets_of("model.safetensors")
    assert gets and all(g["range"] and g["range"].startswith("bytes=0-") and g["range"] != "bytes=0-" for g in gets), (
        gets
    )  # only the header, never the whole file
    hub_cache = Path(subprocess_env["HF_HOME"]) / "hub"
    assert not [p for p in hub_cache.rglob("*") if p.is_file()], "nothing written into the HF cache"


def test_a_saved_token_opens_a_gated_repo_and_stays_in_the_hf_store(subprocess_env, fake_hub, loraloom_home):
    code = "from app.core.hub.client import Hub\nimport sys\nprint(Hub().save_token(sys.stdin.read()))\n"
    saved = subprocess.run(
        [sys.executable, "-c", code], input=TOKEN, capture_output=True, text=True, timeout=60, env=subprocess_env
    )
    assert saved.returncode == 0, saved.stderr
    assert saved.stdout.strip() == "tester"
    assert TOKEN not in saved.stdout + saved.stderr
    store = Path(subprocess_env["HF_HOME"]) / "token"
    assert store.read_text().strip() == TOKEN  # huggingface_hub's own token file

    out = loraloom(subprocess_env, "hub", "download", "dave/gated-sdxl-lora")
    assert out.returncode == 0, out.stderr
    assert TOKEN not in out.stdout + out.stderr
    ours = [p for p in Path(loraloom_home).rglob("*") if p.is_file()]
    assert ours and not [p for p in ours if TOKEN.encode() in p.read_bytes()]
