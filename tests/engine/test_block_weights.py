"""Block weights in the patched model: exact factors per layer, start/stop switching, baking, norms."""

from __future__ import annotations

import adapter_factory as F
import numpy as np
import pytest
import torch

from app.core import block_weights
from app.core.adapters import Part
from app.core.configs import AdapterEntry, GenerateRequest
from app.core.families import Family, spec
from app.engine import block_mix
from app.engine.baking import BakeError, bake_mix
from app.engine.patching import AdapterMixer
from app.engine.rendering import Renderer, _scheduler_for

SD1_BLOCKS = spec(Family.SD1).blocks


@pytest.fixture
def mixer(sd1_pipe):
    m = AdapterMixer(sd1_pipe, Family.SD1)
    yield m
    m.clear()


@pytest.fixture(scope="module")
def locon(sd1_pipe, tmp_path_factory):
    """A LoCon with text-encoder, attention, projection and resnet-conv layers: every kind of block."""
    return F.kohya_lora(sd1_pipe, tmp_path_factory.mktemp("locon") / "locon.safetensors", seed=3, convs=True, proj=True)


def _vector(**values: float) -> str:
    return block_weights.format_vector([values.get(b, 0.0) for b in SD1_BLOCKS])


def _blocks_of(mixer, path) -> dict:
    parsed = mixer.held[0] if mixer.held else None
    assert parsed is not None and parsed.path.name == path.name
    return block_mix.block_names(mixer.index, parsed.layers, Family.SD1)


def _changed(pipe, base) -> set[str]:
    now = F.weights_of(pipe)
    return {k for k in base if not torch.equal(now[k], base[k])}


def test_an_all_ones_vector_is_bit_identical_to_no_vector(sd1_pipe, mixer, locon):
    mixer.set_mix([AdapterEntry(str(locon), 0.7)])
    plain = F.weights_of(sd1_pipe)
    report = mixer.set_mix([AdapterEntry(str(locon), 0.7, lbw=",".join(["1"] * 26))])
    assert report.layers_updated == 0  # nothing to redo: every factor is still 1
    after = F.weights_of(sd1_pipe)
    assert all(torch.equal(after[k], plain[k]) for k in plain)


def test_an_all_zeros_vector_gives_the_base_model_bit_exact(sd1_pipe, mixer, locon):
    base = F.weights_of(sd1_pipe)
    mixer.set_mix([AdapterEntry(str(locon), 1.0)])
    assert _changed(sd1_pipe, base)  # the adapter does change the model
    mixer.set_mix([AdapterEntry(str(locon), 1.0, lbw=",".join(["0"] * 26))])
    assert _changed(sd1_pipe, base) == set()


def test_a_one_hot_vector_changes_only_that_blocks_layers(sd1_pipe, mixer, locon):
    base = F.weights_of(sd1_pipe)
    mixer.set_mix([AdapterEntry(str(locon), 1.0, lbw=_vector(IN01=1.0))])
    blocks = _blocks_of(mixer, locon)
    in_block = {
        f"{'unet' if t.part is Part.UNET else 'text_encoder'}.{t.path}.weight" for t, b in blocks.items() if b == "IN01"
    }
    assert in_block  # the tiny UNet's IN01 has attention and resnet layers
    assert _changed(sd1_pipe, base) == in_block


def test_changing_one_block_repatches_only_that_blocks_layers(sd1_pipe, mixer, locon):
    mixer.set_mix([AdapterEntry(str(locon), 1.0, lbw=_vector(BASE=1, IN01=1, MID=1))])
    blocks = _blocks_of(mixer, locon)
    report = mixer.set_mix([AdapterEntry(str(locon), 1.0, lbw=_vector(BASE=1, IN01=1, MID=0.5))])
    assert report.layers_updated == sum(1 for b in blocks.values() if b == "MID")


def test_a_vector_scales_each_layers_delta_by_its_blocks_factor(sd1_pipe, mixer, locon):
    base = F.weights_of(sd1_pipe)
    mixer.set_mix([AdapterEntry(str(locon), 0.8)])
    full = F.weights_of(sd1_pipe)
    mixer.set_mix([AdapterEntry(str(locon), 0.8, lbw=_vector(BASE=1, IN01=0.5, MID=-1, OUT02=2))])
    now = F.weights_of(sd1_pipe)
    factors = {"BASE": 1.0, "IN01": 0.5, "MID": -1.0, "OUT02": 2.0}
    for target, block in _blocks_of(mixer, locon).items():
        key = f"{'unet' if target.part is Part.UNET else 'text_encoder'}.{target.path}.weight"
        expected = base[key] + factors.get(block, 0.0 if block else 1.0) * (full[key] - base[key])
        torch.testing.assert_close(now[key], expected, rtol=0, atol=1e-6, msg=key)


def test_a_bad_spec_refuses_that_row_and_the_others_still_apply(sd1_pipe, mixer, locon, rgb):
    report = mixer.set_mix([AdapterEntry(str(locon), 1.0, lbw="IND"), AdapterEntry(str(rgb["red"]), 1.0)])
    assert [a["path"] for a in report.applied] == [str(locon), str(rgb["red"])]
    mixer.clear()
    # A preset file the GUI knew and the mixer cannot read: that row is refused with the reason.
    entry = AdapterEntry(str(locon), 1.0)
    entry.lbw = "NO-SUCH-PRESET"
    report = mixer.set_mix([entry, AdapterEntry(str(rgb["red"]), 1.0)])
    assert [a["path"] for a in report.applied] == [str(rgb["red"])]
    assert report.refused[0]["message"].startswith(f"{locon}: block weights 'NO-SUCH-PRESET': no preset")


def test_the_report_carries_per_block_delta_norms(sd1_pipe, mixer, locon):
    report = mixer.set_mix([AdapterEntry(str(locon), 1.0, lbw="MIDD")])
    norms = report.applied[0]["block_norms"]
    assert report.applied[0]["lbw"] == "MIDD"
    blocks = _blocks_of(mixer, locon)
    assert set(norms) == {b for b in blocks.values() if b}
    # Each block's norm is the Frobenius norm of its layers' dense ΔW.
    parsed = mixer.held[0]
    mid = [t for t, b in blocks.items() if b == "MID"]
    dense = sum(float(parsed.layers[t].delta(mixer.base_weight(t)).pow(2).sum()) for t in mid) ** 0.5
    assert norms["MID"] == pytest.approx(dense, rel=1e-4)


def test_an_exact_bake_with_block_weights_renders_as_the_live_mix(sd1_pipe, mixer, locon, rgb, tmp_path):
    entries = [
        AdapterEntry(str(locon), 0.9, lbw=_vector(BASE=1, IN01=0.3, MID=1, OUT02=-0.5, OUT03=1)),
        AdapterEntry(str(rgb["blue"]), 0.5, lbw="MIDD"),
    ]
    mixer.set_mix(entries)
    live = F.render_np(sd1_pipe)
    live_weights = F.weights_of(sd1_pipe)
    result = bake_mix(mixer, entries, tmp_path / "blocks.safetensors")
    assert result.exact and result.relative_error < 1e-5
    mixer.set_mix([AdapterEntry(str(result.path), 1.0)])
    for key, value in live_weights.items():
        torch.testing.assert_close(F.weights_of(sd1_pipe)[key], value, rtol=0, atol=2e-5, msg=key)
    np.testing.assert_allclose(F.render_np(sd1_pipe), live, atol=1e-4)


def test_a_reduced_bake_honours_block_weights(sd1_pipe, mixer, locon, tmp_path):
    entries = [AdapterEntry(str(locon), 1.0, lbw=_vector(IN01=1.0))]
    result = bake_mix(mixer, entries, tmp_path / "reduced.safetensors", rank=2)
    baked = mixer.load([AdapterEntry(str(result.path), 1.0)])[0][0].parsed
    assert {block_mix.block_names(mixer.index, baked.layers, Family.SD1)[t] for t in baked.layers} == {"IN01"}


def test_start_stop_cannot_be_baked(mixer, locon, tmp_path):
    with pytest.raises(BakeError, match="start/stop steps cannot be baked"):
        bake_mix(mixer, [AdapterEntry(str(locon), 1.0, start=0.5)], tmp_path / "x.safetensors")


# ---------------------------------------------------------------- start / stop


def test_step_switches_round_fractions_as_the_extension_does():
    plan = block_mix.StepSwitches.plan(
        [AdapterEntry("a", 1.0, start=0.25), AdapterEntry("b", 1.0, stop=0.5), AdapterEntry("c", 1.0)], 8
    )
    assert plan.spans == {"a": (2, 8), "b": (0, 4)}
    assert [sorted(plan.paused_at(s)) for s in range(8)] == [["a"], ["a"], [], [], ["b"], ["b"], ["b"], ["b"]]
    assert [d for d in range(9) if plan.switches_after(d)] == [2, 4]


def _gen_request(base, adapters, steps=4):
    return GenerateRequest.from_dict(
        dict(
            base=str(base),
            prompt="a red square",
            seed=5,
            steps=steps,
            width=64,
            height=64,
            guidance=5.0,
            adapters=adapters,
        )
    )


def _hand_patched(renderer, request, entry: AdapterEntry, on_at: int | None, off_at: int | None) -> np.ndarray:
    """The same picture with the adapter's UNet part switched by hand from the pipeline's step callback."""
    pipe, mixer = renderer.loaded.pipe, renderer.mixer
    full = AdapterEntry(entry.path, entry.weight)
    unet_off = AdapterEntry(entry.path, 0.0, te_weight=entry.weight)  # the text encoder stays patched
    mixer.set_mix([unet_off if on_at else full])

    def step_end(_pipe, i, _t, kwargs):
        if i + 1 == on_at:
            mixer.set_mix([full])
        if i + 1 == off_at:
            mixer.set_mix([unet_off])
        return kwargs

    pipe.scheduler = _scheduler_for(request.scheduler, renderer._base_scheduler_config)
    with torch.inference_mode():
        image = pipe(
            prompt=request.prompt,
            num_inference_steps=request.steps,
            guidance_scale=request.guidance,
            width=64,
            height=64,
            generator=torch.Generator("cpu").manual_seed(request.seed),
            callback_on_step_end=step_end,
        ).images[0]
    mixer.clear()
    return np.asarray(image)


@pytest.mark.slow
def test_start_and_stop_switch_once_each_and_match_a_hand_patched_render(tiny_sd1, rgb, tmp_path):
    from PIL import Image

    renderer = Renderer()
    entry = AdapterEntry(str(rgb["red"]), 1.0, start=0.25, stop=0.75)
    request = _gen_request(tiny_sd1, [entry.to_dict()])
    result = renderer.render(request, out_path=tmp_path / "switched.png")
    assert renderer.switches == 2  # on at step 1, off at step 3: one patch each
    assert result.meta["adapters"][0]["start"] == 0.25 and result.meta["adapters"][0]["stop"] == 0.75
    switched = np.asarray(Image.open(result.path).convert("RGB"))
    by_hand = _hand_patched(renderer, request, entry, on_at=1, off_at=3)
    assert np.array_equal(switched, by_hand)
    plain = renderer.render(
        _gen_request(tiny_sd1, [AdapterEntry(str(rgb["red"]), 1.0).to_dict()]), out_path=tmp_path / "p.png"
    )
    assert renderer.switches == 0
    assert not np.array_equal(np.asarray(Image.open(plain.path).convert("RGB")), switched)
