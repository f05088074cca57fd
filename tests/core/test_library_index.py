"""The local library: folders, runs and the HF cache, indexed by path + mtime, searched and filtered."""

from __future__ import annotations

import json
import os

import pytest
from fake_hub import diffusers_sdxl, kohya_sd1, safetensors_bytes

from app.core.configs import ConfigError
from app.core.families import Family
from app.core.hub.errors import HubError
from app.core.library import Library, LibrarySettings, Source


@pytest.fixture
def lora_folder(tmp_path):
    """An A1111-style models/Lora folder with good files, sidecars and a few bad ones."""
    root = tmp_path / "Lora"
    (root / "styles").mkdir(parents=True)
    (root / ".trash").mkdir()
    tags = json.dumps({"5_cat": {"tabby": 9, "whiskers": 4}})
    (root / "catstyle.safetensors").write_bytes(
        kohya_sd1(8, {"ss_base_model_version": "sd_v1", "ss_tag_frequency": tags})
    )
    (root / "catstyle.json").write_text(json.dumps({"activation text": "catstyle, fluffy"}))
    (root / "catstyle.preview.png").write_bytes(b"\x89PNG")
    (root / "styles" / "neon-xl.safetensors").write_bytes(diffusers_sdxl(16))
    mystery = "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q"
    (root / "styles" / "mystery.safetensors").write_bytes(
        safetensors_bytes({f"{mystery}.lora_A.weight": ([4, 32], "F32"), f"{mystery}.lora_B.weight": ([32, 4], "F32")})
    )
    (root / "old.pt").write_bytes(b"\x80\x04pickle")
    (root / "vae.safetensors").write_bytes(safetensors_bytes({"decoder.conv_in.weight": ([4, 4], "F32")}))
    cut = kohya_sd1(4)
    (root / "cut.safetensors").write_bytes(cut[: len(cut) - 100])
    (root / ".trash" / "gone.safetensors").write_bytes(kohya_sd1(4))
    return root


def make_library(tmp_path, **kw) -> Library:
    kw.setdefault("hub_cache", tmp_path / "empty-hf-cache")
    kw.setdefault("runs_dir", tmp_path / "runs")
    return Library(**kw)


def test_a_folder_is_listed_with_families_trigger_words_and_problems(tmp_path, lora_folder):
    lib = make_library(tmp_path)
    lib.add_folder(lora_folder)
    report = lib.refresh()
    by_name = {e.name: e for e in report.entries}
    assert set(by_name) == {
        "catstyle.safetensors",
        "neon-xl.safetensors",
        "mystery.safetensors",
        "old.pt",
        "vae.safetensors",
        "cut.safetensors",
    }  # the hidden folder is skipped
    cat = by_name["catstyle.safetensors"]
    assert cat.source is Source.FOLDER and cat.family is Family.SD1 and cat.rank == 8
    assert cat.trigger_words == ["catstyle", "fluffy"] and cat.tags == ["tabby", "whiskers"]
    assert cat.preview == str(lora_folder / "catstyle.preview.png") and cat.usable
    assert by_name["neon-xl.safetensors"].family is Family.SDXL
    assert by_name["mystery.safetensors"].family is None and by_name["mystery.safetensors"].usable
    assert "pickle" in by_name["old.pt"].problem
    assert "not a LoRA adapter" in by_name["vae.safetensors"].problem
    assert "truncated" in by_name["cut.safetensors"].problem and str(lora_folder) in by_name["cut.safetensors"].problem
    assert report.problems == 3 and report.inspected == 6
    assert [e.usable for e in report.entries] == [True] * 3 + [False] * 3  # problems last


def test_search_by_name_trigger_word_and_tag_and_family_filter_keeps_unknown(tmp_path, lora_folder):
    lib = make_library(tmp_path)
    lib.add_folder(lora_folder)
    lib.refresh()

    def names(entries):
        return sorted(e.name for e in entries)

    assert names(lib.search("neon")) == ["neon-xl.safetensors"]
    assert names(lib.search("FLUFFY")) == ["catstyle.safetensors"]
    assert names(lib.search("whiskers")) == ["catstyle.safetensors"]
    assert names(lib.search("cat fluffy")) == ["catstyle.safetensors"]
    assert lib.search("cat nothing") == []
    sdxl = names(lib.search(family=Family.SDXL))
    assert "neon-xl.safetensors" in sdxl and "mystery.safetensors" in sdxl  # unknown base: kept, marked
    assert "catstyle.safetensors" not in sdxl


def test_reopening_reads_no_header_and_a_changed_file_is_read_again(tmp_path, lora_folder):
    lib = make_library(tmp_path)
    lib.add_folder(lora_folder)
    first = lib.refresh()
    again = make_library(tmp_path)  # a new session: folders from library.toml, entries from the index
    assert again.folders == [lora_folder.resolve()]
    second = again.refresh()
    assert (second.inspected, second.reused) == (0, 6)
    assert [e.to_json() for e in second.entries] == [e.to_json() for e in first.entries]
    target = lora_folder / "styles" / "neon-xl.safetensors"
    target.write_bytes(kohya_sd1(32))
    os.utime(target, ns=(1, 1))
    third = again.refresh()
    assert third.inspected == 1 and again.get(target).family is Family.SD1 and again.get(target).rank == 32
    target.unlink()
    assert again.get(target) is not None and again.refresh() and again.get(target) is None


def test_run_checkpoints_are_listed(tmp_path):
    ckpt = tmp_path / "runs" / "mycat" / "checkpoints" / "mycat-step000500.safetensors"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(kohya_sd1(4, {"ss_output_name": "mycat", "modelspec.trigger_phrase": "mycat"}))
    (tmp_path / "runs" / "mycat" / "state").mkdir()
    (tmp_path / "runs" / "mycat" / "state" / "optimizer.safetensors").write_bytes(b"x" * 16)
    entries = make_library(tmp_path).refresh().entries
    assert [(e.source, e.title, e.trigger_words) for e in entries] == [(Source.RUN, "mycat · step 500", ["mycat"])]


def test_a_second_run_of_a_name_is_its_folder_with_its_newest_sample_as_cover(tmp_path):
    """Two runs called "mycat": the second lives in mycat-2 and its cards say so (as History does)."""
    from PIL import Image

    run = tmp_path / "runs" / "mycat-2"
    (run / "checkpoints").mkdir(parents=True)
    meta = {"ss_output_name": "mycat", "modelspec.trigger_phrase": "mycat"}
    (run / "mycat.safetensors").write_bytes(kohya_sd1(4, meta))
    (run / "checkpoints" / "mycat-step000200.safetensors").write_bytes(kohya_sd1(4, meta))
    (run / "samples").mkdir()
    for name in ("step000100-0.png", "step000200-0.png", "step000200-1.png", "step000050-0.png"):
        Image.new("RGB", (8, 8)).save(run / "samples" / name)
    entries = {e.title: e for e in make_library(tmp_path).refresh().entries}
    assert set(entries) == {"mycat-2", "mycat-2 · step 200"}
    assert entries["mycat-2"].preview == str(run / "samples" / "step000200-0.png")
    assert entries["mycat-2 · step 200"].preview == str(run / "samples" / "step000200-0.png")


def test_hub_downloads_are_listed_with_card_trigger_words_and_full_models_are_not(tmp_path, hub, fake_hub, hf_cache):
    lib = make_library(tmp_path, hub_cache=hf_cache)
    repo = hub.details("bob/sdxl-pixel-lora")
    path = hub.download(repo.repo_id, "pytorch_lora_weights.safetensors")
    entry = lib.record_download(path, repo_id=repo.repo_id, trigger_words=repo.trigger_words, family=repo.family)
    assert entry.source is Source.HUB and entry.repo_id == "bob/sdxl-pixel-lora"
    assert entry.trigger_words == ["pixel art", "8-bit"] and entry.family is Family.SDXL
    assert lib.search("pixel") == [entry]
    # A full model in the same cache is not an adapter and not ours to list.
    other = hf_cache / "models--x--full" / "snapshots" / ("a" * 40) / "model.safetensors"
    other.parent.mkdir(parents=True)
    other.write_bytes(safetensors_bytes({"conv_in.weight": ([4, 4], "F32")}))
    fresh = make_library(tmp_path, hub_cache=hf_cache).refresh()
    assert [(e.repo_id, e.trigger_words) for e in fresh.entries] == [("bob/sdxl-pixel-lora", ["pixel art", "8-bit"])]
    # A download that failed its checksum never appears.
    fake_hub.corrupt.add("red-style.safetensors")
    with pytest.raises(HubError):
        hub.download("alice/red-style-lora", "red-style.safetensors")
    assert [e.repo_id for e in make_library(tmp_path, hub_cache=hf_cache).refresh().entries] == ["bob/sdxl-pixel-lora"]


def test_settings_reject_bad_folders_and_unknown_keys(tmp_path):
    lib = make_library(tmp_path)
    with pytest.raises(ValueError, match="not a folder"):
        lib.add_folder(tmp_path / "nope")
    lib.settings_path.parent.mkdir(parents=True, exist_ok=True)
    lib.settings_path.write_text('version = 1\nfolders = ["/x"]\nfolderz = []\n')
    with pytest.raises(ConfigError, match="folderz"):
        LibrarySettings.load_toml(lib.settings_path)
    lib.settings_path.write_text("version = 1\nfolders = [3]\n")
    with pytest.raises(ConfigError, match="folders"):
        LibrarySettings.load_toml(lib.settings_path)
    assert make_library(tmp_path).folders == []  # a broken settings file is reported and ignored
