"""Every file the real writers make opens right: LoRA Loom's patched model gives the writer's own numbers.

For each algorithm / variant lycoris-lora can write and each way peft/diffusers save, on the
tiny SD1 and SDXL models with random non-zero weights: the writer's layers stay live in a
reference pipeline, and its forward at weight w is the truth. Checked: every text encoder's
hidden states and the UNet's prediction at w = 1, 0.6, -1, and the rendered picture at w = 1
(for one case of each kind);
the adapter's own effect must be far above the tolerance, or the test could not fail.
"""

from __future__ import annotations

import adapter_factory as F
import numpy as np
import pytest
import writers as W

from app.core.configs import AdapterEntry
from app.core.families import Family
from app.engine.patching import AdapterMixer
from app.engine.tiny import load_tiny_pipeline

TOL = 1e-5
WEIGHTS = (1.0, 0.6, -1.0)
DORA_WEIGHTS = (1.0,)  # at other weights every tool means something else by DoRA (README)

LYCORIS = {
    "locon": dict(algo="locon"),
    "locon-tucker": dict(algo="locon", use_tucker=True),
    "locon-norm": dict(algo="locon", train_norm=True),  # + the resnets' GroupNorm w_norm / b_norm
    "loha": dict(algo="loha", sigma=0.3),
    "loha-tucker": dict(algo="loha", use_tucker=True, sigma=0.3),
    "lokr": dict(algo="lokr", rank=2),
    "lokr-factor4": dict(algo="lokr", rank=2, factor=4),
    "lokr-decompose-both": dict(algo="lokr", rank=2, factor=4, decompose_both=True),
    "lokr-tucker": dict(algo="lokr", rank=2, factor=4, use_tucker=True),
    "lokr-full-matrix": dict(algo="lokr", factor=4, full_matrix=True),
    "dora-out": dict(algo="locon", dora_wd=True, wd_on_output=True),
    "dora-in": dict(algo="locon", dora_wd=True, wd_on_output=False),
    "ia3": dict(algo="ia3"),
    "full": dict(algo="full", sigma=0.02),
    "glora": dict(algo="glora"),
    "glora-tucker": dict(algo="glora", glora_tucker=True),  # lycoris' own tucker layers (writers._glora_tucker)
    "oft": dict(algo="diag-oft"),
    "boft": dict(algo="boft"),
    "simpletuner-prefix": dict(algo="lora", prefix="lycoris"),
}
PEFT = {
    "diffusers-metadata": dict(how="diffusers", alpha=12.0),
    "diffusers-no-metadata": dict(how="diffusers", alpha=4.0, metadata=False),
    "diffusers-to-kohya": dict(how="kohya", alpha=4.0),
    "peft-save-pretrained": dict(how="peft", alpha=8.0),
    "rslora": dict(how="diffusers", alpha=6.0, use_rslora=True),
    "alpha-pattern": dict(how="diffusers", alpha=8.0, alpha_pattern={"to_k": 2.0, "q_proj": 16.0}),
    "peft-dora-linear": dict(how="diffusers", alpha=8.0, use_dora=True),
    "peft-dora-conv": dict(how="diffusers", alpha=8.0, use_dora=True, convs=True, te=False),
}
# The picture is a function of the text-encoder and UNet outputs checked for every case; it is
# also rendered for one case of each kind of maths (rendering is most of the corpus' time).
RENDERED = {
    ("sd1", "locon-tucker"),
    ("sd1", "loha"),
    ("sd1", "lokr-tucker"),
    ("sd1", "dora-in"),
    ("sd1", "ia3"),
    ("sd1", "oft"),
    ("sd1", "glora"),
    ("sd1", "peft-dora-conv"),
    ("sdxl", "locon"),
    ("sdxl", "boft"),
    ("sdxl", "diffusers-metadata"),
}
CASES = [(fam, name) for fam in ("sd1", "sdxl") for name in [*LYCORIS, *PEFT]]


class Setup:
    def __init__(self, family: str, path) -> None:
        self.family = family
        self.ours = load_tiny_pipeline(path)
        self.ref = load_tiny_pipeline(path)
        self.mixer = AdapterMixer(self.ours, Family(family))
        self.inputs = W.fixed_inputs(self.ours)
        self.base = W.outputs(self.ours, self.inputs)


@pytest.fixture(scope="module")
def setups(tiny_sd1, tiny_sdxl):
    """Both families' pipelines, loaded once for the whole corpus."""
    return {"sd1": Setup("sd1", tiny_sd1), "sdxl": Setup("sdxl", tiny_sdxl)}


def _write(setup: Setup, name: str, folder):
    if name in LYCORIS:
        kwargs = dict(LYCORIS[name])
        return W.lycoris_file(setup.ref, folder / f"{name}.safetensors", kwargs.pop("algo"), **kwargs)
    return W.peft_file(setup.ref, folder / name / "pytorch_lora_weights.safetensors", **PEFT[name])


@pytest.mark.parametrize(("family", "name"), CASES, ids=[f"{f}-{n}" for f, n in CASES])
def test_a_written_file_applies_exactly_as_its_writer_runs_it(setups, tmp_path, family, name):
    setup = setups[family]
    written = _write(setup, name, tmp_path)
    weights = DORA_WEIGHTS if "dora" in name else WEIGHTS
    worst, effect_min = 0.0, float("inf")
    try:
        for w in weights:
            written.set_weight(w)
            theirs = W.outputs(setup.ref, setup.inputs)
            report = setup.mixer.set_mix([AdapterEntry(str(written.path), w)])
            assert report.refused == [], report.refused[0]["message"]
            assert report.warnings == []
            ours = W.outputs(setup.ours, setup.inputs)
            effect = max(W.max_diff(theirs, setup.base).values())
            diff = W.max_diff(ours, theirs)
            assert max(diff.values()) <= TOL, f"weight {w}: {diff}, effect {effect:.3g}"
            assert effect > 100 * TOL, f"weight {w}: the adapter barely acts ({effect:.3g})"
            worst, effect_min = max(worst, *diff.values()), min(effect_min, effect)
            if w == 1.0 and (family, name) in RENDERED:
                picture = np.abs(F.render_np(setup.ours, steps=2) - F.render_np(setup.ref, steps=2)).max()
                assert picture <= TOL, f"the pictures differ by {picture:.3g}"
                worst = max(worst, float(picture))
    finally:
        written.remove()
        setup.mixer.clear()
    print(f"corpus | {family}-{name} | {worst:.1e} | {effect_min:.3g}")  # the table, with pytest -s
