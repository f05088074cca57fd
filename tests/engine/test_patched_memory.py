"""Patching holds no copy of W0 when the base model came from files (issue 14's memory target).

The bytes the mixer holds are counted structurally: every tensor reachable from the mixer
except the model's own weights and the held adapters' tensors (counted apart).
"""

from __future__ import annotations

import gc
import json
import os
import platform
import shutil
import subprocess
import sys
import types
from pathlib import Path

import adapter_factory as F
import pytest
import torch

from app.core.configs import AdapterEntry, DevicePref, DtypePref, ModelSpec
from app.core.families import Family
from app.engine.adapter_formats import LayerIndex, ParsedAdapter
from app.engine.patching import AdapterMixer
from app.engine.rendering import Renderer, RenderFailed
from app.engine.tiny import load_tiny_pipeline


def held_bytes(mixer: AdapterMixer) -> int:
    """Bytes of the tensor storages the mixer keeps, besides the model and the adapters it holds."""
    return tensor_bytes([mixer], skip=(ParsedAdapter,))


def adapter_bytes(mixer: AdapterMixer) -> int:
    """Bytes of the tensor storages the mixer's held adapters keep."""
    return tensor_bytes(mixer.held)


def tensor_bytes(roots: list[object], skip: tuple[type, ...] = ()) -> int:
    """Bytes of every tensor storage reachable from ``roots``, not counting the model's own."""
    seen: set[int] = set()
    storages: set[int] = set()
    total = 0
    stack: list[object] = list(roots)
    skip = skip + (LayerIndex, torch.nn.Module, type, types.FunctionType, types.ModuleType)
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, torch.Tensor):
            storage = obj.untyped_storage()
            if storage.data_ptr() not in storages:
                storages.add(storage.data_ptr())
                total += storage.nbytes()
            continue
        if not isinstance(obj, skip):
            stack.extend(gc.get_referents(obj))
    return total


def snapshot(pipe) -> dict[str, torch.Tensor]:
    return {f"{c}.{k}": v.clone() for c in ("unet", "text_encoder") for k, v in getattr(pipe, c).state_dict().items()}


def same_as(pipe, snap: dict[str, torch.Tensor]) -> bool:
    now = snapshot(pipe)
    return now.keys() == snap.keys() and all(torch.equal(now[k], snap[k]) for k in snap)


def mix(rgb, red=0.8, green=0.5, blue=1.2, red_te=0.6) -> list[AdapterEntry]:
    return [
        AdapterEntry(path=str(rgb["red"]), weight=red, te_weight=red_te),
        AdapterEntry(path=str(rgb["green"]), weight=green),
        AdapterEntry(path=str(rgb["blue"]), weight=blue),
    ]


def test_patching_a_model_loaded_from_its_folder_keeps_no_copy_of_w0(tiny_sd1, rgb):
    pipe = load_tiny_pipeline(tiny_sd1)
    in_memory = AdapterMixer(load_tiny_pipeline(tiny_sd1), Family.SD1)
    from_files = AdapterMixer(pipe, Family.SD1, base=tiny_sd1)
    touched = in_memory.set_mix(mix(rgb)).layers_updated
    assert touched > 0 and from_files.set_mix(mix(rgb)).layers_updated == touched
    # today's behaviour for a model without files: a copy of every touched layer's W0
    weights = sum(in_memory.index.modules[t].weight.numel() * 4 for t in in_memory.patched_layers())
    assert held_bytes(in_memory) >= weights > 0
    assert in_memory.kept_bytes() >= weights
    assert from_files.patched_layers() == in_memory.patched_layers()
    assert held_bytes(from_files) == 0 and from_files.kept_bytes() == 0


def test_held_adapters_keep_where_their_factors_are_not_copies_of_them(sd1_pipe, rgb):
    mixer = AdapterMixer(sd1_pipe, Family.SD1)
    mixer.set_mix(mix(rgb))
    factors = sum(t.numel() * 4 for p in mixer.held for d in p.layers.values() for t in d.tensors.values())
    assert factors > 0  # read back as float32 whenever used
    assert adapter_bytes(mixer) == 0
    mixer.clear()


def test_w0_read_back_from_the_files_mixes_and_restores_bit_for_bit(tiny_sd1, rgb):
    ref_pipe, pipe = load_tiny_pipeline(tiny_sd1), load_tiny_pipeline(tiny_sd1)
    original = snapshot(pipe)
    ref, mixer = AdapterMixer(ref_pipe, Family.SD1), AdapterMixer(pipe, Family.SD1, base=tiny_sd1)
    for entries in (mix(rgb), mix(rgb, red=0.0), mix(rgb, blue=-0.3), mix(rgb)[1:], mix(rgb)):
        ref.set_mix(entries)
        mixer.set_mix(entries)
        assert same_as(pipe, snapshot(ref_pipe))
    for target in mixer.patched_layers():
        assert torch.equal(mixer.base_weight(target), ref.base_weight(target))
    mixer.set_mix(mix(rgb, 0.0, 0.0, 0.0, 0.0))
    assert same_as(pipe, original)
    mixer.set_mix(mix(rgb))
    mixer.clear()
    assert same_as(pipe, original) and not mixer.patched_layers()


def test_a_base_file_rewritten_in_place_fails_the_render_with_a_sentence_and_is_loaded_anew(tiny_sd1, rgb, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_sd1, folder)
    renderer = Renderer()
    spec = ModelSpec(base=str(folder), device=DevicePref.CPU, dtype=DtypePref.FP32)
    renderer.ensure_model(spec)
    renderer.set_adapters(mix(rgb))
    unet_file = next((folder / "unet").glob("*.safetensors"))
    with open(unet_file, "ab") as fh:  # in place: same inode, new size
        fh.write(b"\0" * 16)
    with pytest.raises(RenderFailed) as err:
        renderer.set_adapters([])
    assert str(err.value) == (
        f"{unet_file}: the file changed on disk while it was in use; render again "
        "(the model and its adapters are read anew)"
    )
    assert renderer.loaded is None  # its patched weights could not be put back


def test_a_base_file_replaced_by_a_new_one_still_restores_the_loaded_w0(tiny_sd1, rgb, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(tiny_sd1, folder)
    pipe = load_tiny_pipeline(folder)
    original = snapshot(pipe)
    mixer = AdapterMixer(pipe, Family.SD1, base=folder)
    mixer.set_mix(mix(rgb))
    unet_file = next((folder / "unet").glob("*.safetensors"))
    other = tmp_path / "other.safetensors"
    other.write_bytes(b"not a model")
    other.replace(unet_file)  # what an atomic save over the checkpoint does
    mixer.clear()
    assert same_as(pipe, original)


def test_stacked_loras_convs_and_other_kinds_patch_w0_plus_each_adapters_delta(sd1_pipe, rgb, tmp_path):
    """Plain LoRAs (linear and 3x3 conv) are summed as one product of their stacked factors;
    other kinds on the same layers are added densely: together still W0 + Σ wᵢ·ΔWᵢ."""
    loha = F.loha(sd1_pipe, tmp_path / "h.safetensors", alpha=2.0, rank=4)
    dora = F.dora(sd1_pipe, tmp_path / "o.safetensors")
    entries = [*mix(rgb), AdapterEntry(path=str(loha), weight=-0.7), AdapterEntry(path=str(dora), weight=0.4)]
    mixer = AdapterMixer(sd1_pipe, Family.SD1)
    mixer.set_mix(entries)
    weights = {_key_of(e.path): (e.weight, e.text_weight()) for e in entries}
    convs = 0
    for target in mixer.patched_layers():
        w0 = mixer.base_weight(target)
        expected = w0.clone()
        for parsed in mixer.held:
            if target in parsed.layers:
                unet_w, te_w = weights[_key_of(parsed.path)]
                expected += parsed.layers[target].delta(w0, unet_w if target.part.value == "unet" else te_w)
        convs += w0.dim() == 4 and w0.shape[-1] == 3
        torch.testing.assert_close(mixer.index.modules[target].weight, expected, rtol=0, atol=2e-6, msg=str(target))
    assert convs > 0  # blue's LoCon 3x3 convs went through the stacked product too
    mixer.clear()


def _key_of(path) -> str:
    return str(Path(path).resolve())


_FREED_SCRIPT = """
import json, sys, torch
from pathlib import Path
from app.core.configs import AdapterEntry
from app.core.families import Family
from app.engine.patching import AdapterMixer
from app.engine.tiny import load_tiny_pipeline

def anon():
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("RssAnon:"))
    return int(line.split()[1]) * 1024

pipe = load_tiny_pipeline(sys.argv[1])
mixer = AdapterMixer(pipe, Family.SD1, base=sys.argv[1])
mixer.set_mix([AdapterEntry(path=sys.argv[2], weight=0.5)])
# What recomputing thousands of real-size layers leaves: layer-sized buffers freed between
# live ones (glibc's mmap threshold rises to the first big block freed: the rest go to the heap).
big = torch.ones(2 << 20)  # 8 MB
del big
buffers = [torch.ones(1 << 20) for _ in range(128)]  # 4 MB each
del buffers[::2]  # 256 MB of holes
before = anon()
mixer.set_mix([AdapterEntry(path=sys.argv[2], weight=0.9)])  # a slider move
print(json.dumps({"freed_by_the_move": before - anon()}))
"""


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc keeps freed heap"
)
def test_a_slider_move_hands_freed_heap_memory_back_to_the_system(tiny_sd1, rgb):
    """After patching 8 SDXL LoRAs glibc held 1.0 GB of freed buffers resident (1.13x the bare
    model); the mix now returns such pages. 256 MB left freed before a move are given back."""
    out = subprocess.run(
        [sys.executable, "-c", _FREED_SCRIPT, str(tiny_sd1), str(rgb["red"])],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env=dict(os.environ),
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    freed = json.loads(out.stdout.strip().splitlines()[-1])["freed_by_the_move"]
    assert freed > 200 << 20, f"only {freed / 2**20:.0f} MB of the 256 MB freed went back"
