"""Adapter files whose header lies about its types, or that are not files at all (issue 10, items 2-3).

Each one is refused with one sentence naming the file by ``loraloom inspect``, and listed
with that sentence (never a failure of the whole command) by ``library add`` / ``library list``.
"""

from __future__ import annotations

import json
import os
import struct

import pytest
from fake_hub import kohya_sd1

from app.cli import main
from app.core.adapters import AdapterError, inspect_adapter
from app.core.library import Library

pytestmark = pytest.mark.timeout(120)  # a FIFO that is opened would block here until then

MOD = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
GOOD = {
    f"{MOD}.lora_down.weight": {"dtype": "F32", "shape": [4, 768], "data_offsets": [0, 12288]},
    f"{MOD}.lora_up.weight": {"dtype": "F32", "shape": [320, 4], "data_offsets": [12288, 17408]},
}
DATA = 17408


def raw_file(path, header_text: str, data_len: int = DATA):
    raw = header_text.encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\0" * data_len)
    return path


def with_entry(**changes) -> str:
    header = json.loads(json.dumps(GOOD))
    header[f"{MOD}.lora_down.weight"].update(changes)
    return json.dumps(header)


def with_meta(meta: dict) -> str:
    return json.dumps({"__metadata__": meta, **GOOD})


# name -> (header JSON text, words the refusal must contain)
BAD_HEADERS = {
    "shape-int": (with_entry(shape=4), "shape that is not a list"),
    "shape-bool": (with_entry(shape=[True, 768]), "shape that is not a list"),
    "shape-nested": (with_entry(shape=[[4], 768]), "shape that is not a list"),
    "shape-negative": (with_entry(shape=[-4, 768]), "shape that is not a list"),
    "shape-float": (with_entry(shape=[4.0, 768]), "shape that is not a list"),
    "dtype-list": (with_entry(dtype=["F32"]), "unknown dtype"),
    "dtype-unknown": (with_entry(dtype="F33"), "unknown dtype"),
    "offsets-reversed": (with_entry(data_offsets=[12288, 0]), "data_offsets 12288 > 0"),
    "offsets-three": (with_entry(data_offsets=[0, 1, 2]), "data_offsets that are not two"),
    "offsets-strings": (with_entry(data_offsets=["0", "12288"]), "data_offsets that are not two"),
    "offsets-size-mismatch": (with_entry(data_offsets=[0, 16]), "holds 16 bytes but its shape"),
    "offsets-past-end": (with_entry(data_offsets=[0, 10**12]), "truncated"),
    "entry-not-object": (json.dumps({**GOOD, "x.lora_down.weight": [1, 2]}), "is not a JSON object"),
    "deep-nesting": ('{"a":' * 5000 + "1" + "}" * 5000, "nested too deeply"),
    "huge-integer": (with_entry(shape=[12345, 768]).replace("12345", "9" * 5000), "not JSON"),
    "nan-in-header": (
        with_entry(shape="NaN").replace('"NaN"', "NaN"),
        "not a safetensors file (header has NaN, which JSON does not allow)",
    ),
    "metadata-list": (json.dumps({"__metadata__": ["a"], **GOOD}), "malformed safetensors metadata"),
    "metadata-value-int": (with_meta({"ss_network_dim": 4}), "every value must be a string"),
    "network-dim-text": (with_meta({"ss_network_dim": "four"}), "ss_network_dim is 'four', not a finite number"),
    "network-dim-superscript": (with_meta({"ss_network_dim": "²"}), "ss_network_dim is '²'"),
    "network-dim-fraction": (with_meta({"ss_network_dim": "2.5"}), "not a whole number"),
    "alpha-infinite": (with_meta({"ss_network_alpha": "inf"}), "ss_network_alpha is 'inf', not a finite number"),
    "tag-frequency-infinity": (
        with_meta({"ss_tag_frequency": '{"1_a": {"cat": Infinity}}'}),
        "ss_tag_frequency is malformed",
    ),
    "tag-frequency-nan": (with_meta({"ss_tag_frequency": '{"1_a": {"cat": NaN}}'}), "ss_tag_frequency is malformed"),
    "tag-frequency-shape": (with_meta({"ss_tag_frequency": '["cat"]'}), "ss_tag_frequency is malformed"),
    "tag-frequency-deep": (
        with_meta({"ss_tag_frequency": "[" * 100000 + "]" * 100000}),
        "ss_tag_frequency is malformed",
    ),
    "rank-0": (
        json.dumps(
            {
                f"{MOD}.lora_down.weight": {"dtype": "F32", "shape": [0, 768], "data_offsets": [0, 0]},
                f"{MOD}.lora_up.weight": {"dtype": "F32", "shape": [320, 0], "data_offsets": [0, 0]},
            }
        ),
        "a rank-0 adapter",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_HEADERS))
def test_inspect_refuses_a_lying_header_in_one_sentence(name, tmp_path, capsys):
    text, words = BAD_HEADERS[name]
    path = raw_file(tmp_path / f"{name}.safetensors", text, 0 if name == "rank-0" else DATA)
    with pytest.raises(AdapterError) as info:
        inspect_adapter(path)
    assert str(path) in str(info.value) and words in str(info.value), str(info.value)
    assert main(["inspect", str(path)]) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert captured.out == "" and err.startswith(f"loraloom: error: {path}:") and "\n" not in err


def test_inspect_prints_valid_json_for_a_good_file(tmp_path, capsys):
    path = tmp_path / "good.safetensors"
    path.write_bytes(kohya_sd1(4, {"ss_network_alpha": "2", "ss_tag_frequency": json.dumps({"1_a": {"cat": 3}})}))
    assert main(["inspect", str(path)]) == 0
    data = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"bare {c} in the JSON"))
    assert data["alpha"] == 2.0 and data["rank"] == 4


def test_unset_network_dim_and_alpha_as_kohya_writes_them_are_accepted(tmp_path):
    path = raw_file(tmp_path / "lyco.safetensors", with_meta({"ss_network_dim": "None", "ss_network_alpha": "None"}))
    info = inspect_adapter(path)
    assert info.rank == 4 and info.alpha is None


def _special_files(folder, tmp_path):
    """A FIFO, a device, a link out of the folder, a link to /dev/zero and a link loop, all named .safetensors."""
    secret = tmp_path / "outside.safetensors"
    secret.write_bytes(kohya_sd1(4))
    os.mkfifo(folder / "pipe.safetensors")
    os.symlink("/dev/null", folder / "device.safetensors")
    os.symlink("/dev/zero", folder / "zero.safetensors")
    os.symlink(secret, folder / "link-out.safetensors")
    os.symlink("loop-b.safetensors", folder / "loop-a.safetensors")
    os.symlink("loop-a.safetensors", folder / "loop-b.safetensors")
    return {
        "pipe": "named pipe (FIFO), not a regular file",
        "device": "outside the folder",
        "zero": "outside the folder",
        "link-out": "outside the folder",
        "loop-a": "symbolic link loop",
        "loop-b": "symbolic link loop",
    }


def test_special_files_named_safetensors_are_refused_without_being_opened(tmp_path):
    folder = tmp_path / "Lora"
    folder.mkdir()
    _special_files(folder, tmp_path)
    with pytest.raises(AdapterError, match="named pipe"):
        inspect_adapter(folder / "pipe.safetensors")
    with pytest.raises(AdapterError, match="a device, not a regular file"):
        inspect_adapter(folder / "device.safetensors")  # no folder to stay in: the device itself is refused
    with pytest.raises(AdapterError, match="symbolic link loop"):
        inspect_adapter(folder / "loop-a.safetensors")


def test_library_add_and_list_skip_bad_files_and_list_them(tmp_path, capsys):
    folder = tmp_path / "Lora"
    folder.mkdir()
    (folder / "good.safetensors").write_bytes(kohya_sd1(4, {"ss_base_model_version": "sd_v1"}))
    expect = _special_files(folder, tmp_path)
    for name in (
        "shape-bool",
        "dtype-list",
        "network-dim-superscript",
        "tag-frequency-infinity",
        "deep-nesting",
        "rank-0",
    ):
        text, words = BAD_HEADERS[name]
        raw_file(folder / f"{name}.safetensors", text, 0 if name == "rank-0" else DATA)
        expect[name] = words
    assert main(["library", "add", str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"{folder}: {len(expect) + 1} adapter files, {len(expect)} cannot be used:" in out
    for name, words in expect.items():
        line = next(ln for ln in out.splitlines() if f"{name}.safetensors:" in ln)
        assert words in line, (name, line)
    assert main(["library", "list", "--json"]) == 0
    entries = {os.path.basename(e["path"]): e for e in json.loads(capsys.readouterr().out)}
    assert entries["good.safetensors"]["problem"] == "" and entries["good.safetensors"]["rank"] == 4
    for name, words in expect.items():
        assert words in entries[f"{name}.safetensors"]["problem"], name
    assert main(["library", "list"]) == 0  # a second listing (from the index) works just the same
    assert "PROBLEM" in capsys.readouterr().out


def test_library_refuses_a_preview_that_links_out_of_the_folder(tmp_path):
    folder = tmp_path / "Lora"
    folder.mkdir()
    (folder / "cat.safetensors").write_bytes(kohya_sd1(4))
    os.symlink("/etc/hostname", folder / "cat.preview.png")
    library = Library(hub_cache=tmp_path / "hf", runs_dir=tmp_path / "runs")
    library.add_folder(folder)
    entry = library.refresh().entries[0]
    assert entry.usable and entry.preview is None
