"""Every family in the table has an engine, and the engines do what the old branches did."""

from __future__ import annotations

import pytest
import torch

from app.core import families
from app.core.families import FAMILIES, Family
from app.engine.families import ENGINES, engine
from app.engine.tiny import build_tiny_pipeline


def test_every_family_has_an_engine_module():
    assert set(ENGINES) == {f.id for f in FAMILIES}
    for fam in Family:
        assert engine(fam.value) is ENGINES[fam] and ENGINES[fam].family is fam
        assert ENGINES[fam].__module__.startswith("app.engine.families")
    with pytest.raises(ValueError):
        engine("flux")


@pytest.mark.parametrize("fam", list(Family))
def test_engine_agrees_with_the_table(fam):
    eng, spec = engine(fam), families.spec(fam)
    assert eng.pipeline_class().__name__ in spec.pipeline_classes
    # tiny_text_encoders are the CLIP ones; the engine builds the others (Flux's T5, Z-Image's Qwen3)
    own = {Family.FLUX1: 1, Family.ZIMAGE: 1}.get(fam, 0)
    assert len(eng.tiny_text_encoders) + own == len(spec.text_widths) == len(spec.te_prefixes)
    # The old engine/models.py: every SD pipeline but SDXL's loads without a safety checker.
    old = {} if fam.value in ("sdxl", "flux1", "zimage") else {"safety_checker": None, "requires_safety_checker": False}
    assert eng.load_kwargs() == old


@pytest.mark.parametrize("fam", [Family.SD1, Family.SD2, Family.SDXL])
def test_prompt_encoding_and_added_conditioning_match_the_pipeline(fam):
    """What training feeds the UNet is what the pipeline itself computes for a prompt."""
    pipe = build_tiny_pipeline(fam.value, seed=1)
    eng = engine(fam)
    with torch.no_grad():
        out = eng.encode_prompts(pipe, ["a red square", "a blue circle"], torch.device("cpu"))
        cond = eng.added_conditioning(out, [[64, 64, 0, 0, 64, 64]] * 2, torch.device("cpu"), torch.float32)
        expected = pipe.encode_prompt(
            prompt=["a red square", "a blue circle"],
            device=torch.device("cpu"),
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
        )
    assert torch.equal(out["embeds"], expected[0])
    if spec_has_size_conditioning(fam):
        assert torch.equal(out["pooled"], expected[2])
        added = cond["added_cond_kwargs"]
        assert torch.equal(added["text_embeds"], expected[2])
        assert added["time_ids"].tolist() == [[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]] * 2
        # The UNet accepts exactly these inputs.
        unet = pipe.unet
        latents = torch.zeros(2, 4, 8, 8)
        unet(latents, torch.tensor([10, 10]), encoder_hidden_states=out["embeds"], **cond)
    else:
        assert set(out) == {"embeds"} and cond == {}


def spec_has_size_conditioning(fam: Family) -> bool:
    return families.spec(fam).size_conditioning


def test_flux_prompt_encoding_matches_the_pipeline_and_feeds_the_transformer():
    pipe = build_tiny_pipeline("flux1", seed=1)
    eng = engine(Family.FLUX1)
    prompts = ["a red square", "a blue circle"]
    with torch.no_grad():
        out = eng.encode_prompts(pipe, prompts, torch.device("cpu"))
        embeds, pooled, text_ids = pipe.encode_prompt(
            prompt=prompts, prompt_2=None, device=torch.device("cpu"), max_sequence_length=eng.max_sequence(pipe)
        )
        assert torch.equal(out["embeds"], embeds) and torch.equal(out["pooled"], pooled)
        assert out["embeds"].shape == (2, eng.max_sequence(pipe), pipe.transformer.config.joint_attention_dim)
        cond = eng.added_conditioning(out, [], torch.device("cpu"), torch.float32)
        # 8x8 latents of 16 channels, packed 2x2 into 16 tokens of 64, as FluxPipeline does.
        latents = torch.zeros(2, 16, 64)
        image_ids = pipe._prepare_latent_image_ids(2, 4, 4, torch.device("cpu"), torch.float32)
        pred = pipe.transformer(
            hidden_states=latents,
            timestep=torch.tensor([0.5, 0.5]),
            guidance=torch.tensor([3.5, 3.5]),
            encoder_hidden_states=out["embeds"],
            img_ids=image_ids,
            return_dict=False,
            **cond,
        )[0]
    assert pred.shape == latents.shape and torch.isfinite(pred).all()
