"""LyCORIS LoKr and LoHa on Flux (SimpleTuner's ``lycoris_`` names on diffusers' transformer), made
with lycoris-lora itself: LoRA Loom's patched transformer must give lycoris' own forward."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from app.core.adapters import NetworkType, Part, inspect_adapter
from app.core.configs import AdapterEntry
from app.core.families import Family
from app.engine.patching import AdapterMixer
from app.engine.tiny import load_tiny_pipeline

FLUX_BLOCKS = ["FluxTransformerBlock", "FluxSingleTransformerBlock"]


def _inputs(transformer, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    cfg = transformer.config
    seq, text = 16, 8
    return {
        "hidden_states": torch.randn(1, seq, cfg.in_channels, generator=gen),
        "encoder_hidden_states": torch.randn(1, text, cfg.joint_attention_dim, generator=gen),
        "pooled_projections": torch.randn(1, cfg.pooled_projection_dim, generator=gen),
        "timestep": torch.tensor([0.6]),
        "img_ids": torch.randint(0, 4, (seq, 3), generator=gen).float(),
        "txt_ids": torch.zeros(text, 3),
        "guidance": torch.tensor([3.5]),
    }


def _forward(transformer, inputs) -> torch.Tensor:
    with torch.inference_mode():
        return transformer(**inputs, return_dict=False)[0].clone()


def _lycoris_file(pipe, path, algo: str, seed: int):
    from lycoris import LycorisNetwork, create_lycoris

    old = LycorisNetwork.LORA_PREFIX, LycorisNetwork.TARGET_REPLACE_MODULE
    LycorisNetwork.LORA_PREFIX, LycorisNetwork.TARGET_REPLACE_MODULE = "lycoris", FLUX_BLOCKS
    try:
        net = create_lycoris(
            pipe.transformer, 1.0, linear_dim=4, linear_alpha=2.0, algo=algo, preset="full", warn_on_unmatched=False
        )
    finally:
        LycorisNetwork.LORA_PREFIX, LycorisNetwork.TARGET_REPLACE_MODULE = old
    net.apply_to()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in net.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    save_file({k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}, str(path))
    return net


@pytest.mark.parametrize("algo", ["lokr", "loha"])
def test_lycoris_on_flux_matches_lycoris_own_forward(tiny_flux1, tmp_path, algo):
    reference = load_tiny_pipeline(tiny_flux1)
    inputs = _inputs(reference.transformer)
    bare = _forward(reference.transformer, inputs)
    path = tmp_path / f"{algo}.safetensors"
    net = _lycoris_file(reference, path, algo, seed=3)
    info = inspect_adapter(path)
    assert info.parts == [Part.TRANSFORMER] and info.family is Family.FLUX1
    assert info.network is (NetworkType.LOKR if algo == "lokr" else NetworkType.LOHA)

    pipe = load_tiny_pipeline(tiny_flux1)
    mixer = AdapterMixer(pipe, Family.FLUX1, base=tiny_flux1)
    for weight in (1.0, 0.6, -1.0):
        net.set_multiplier(weight)
        theirs = _forward(reference.transformer, inputs)
        report = mixer.set_mix([AdapterEntry(str(path), weight)])
        assert report.refused == [] and report.warnings == []
        ours = _forward(pipe.transformer, inputs)
        assert float((theirs - bare).abs().max()) > 0.05  # the adapter really changes the output
        torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-4)
    mixer.clear()
    assert torch.equal(_forward(pipe.transformer, inputs), bare)
