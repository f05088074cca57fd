"""Chroma on its tiny model (ChromaPipeline: ChromaTransformer2DModel, T5 only, Flux's VAE):
rendering with real CFG, mixing Flux-named LoRAs by weight patching against diffusers' own
loader, a lycoris LoKr against lycoris' forward, the family told from a file, wrong-family refusals."""

from __future__ import annotations

import flux_adapters as FA
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from app.core import families
from app.core.adapters import inspect_adapter
from app.core.configs import AdapterEntry, GenerateRequest
from app.core.families import Family
from app.engine.adapter_formats import IncompatibleAdapter, LayerIndex, read_adapter
from app.engine.families import engine
from app.engine.layer_index import Target
from app.engine.patching import AdapterMixer
from app.engine.rendering import Renderer
from app.engine.tiny import load_tiny_pipeline

CHROMA = engine("chroma")
# diffusers' kohya Flux converter splits a single block's linear1 at the real widths only (3072 + 12288).
NOT_IN_DIFFUSERS = ("linear1", "img_in", "txt_in", "final_layer")


@pytest.fixture(scope="module")
def chroma_dir(tiny_model):
    return tiny_model("chroma")


@pytest.fixture(scope="module")
def pipe(chroma_dir):
    return load_tiny_pipeline(chroma_dir)


@pytest.fixture
def mixer(pipe, chroma_dir):
    m = AdapterMixer(pipe, Family.CHROMA, base=chroma_dir)
    yield m
    m.clear()


def render_np(pipe, negative: str = "", steps: int = 2) -> np.ndarray:
    with torch.inference_mode():
        return pipe(
            prompt="a red square",
            negative_prompt=negative,
            num_inference_steps=steps,
            guidance_scale=5.0,
            width=64,
            height=64,
            generator=torch.Generator("cpu").manual_seed(1),
            output_type="np",
            max_sequence_length=CHROMA.max_sequence(pipe),
        ).images[0]


def weights_of(pipe) -> dict[str, torch.Tensor]:
    return {
        k.replace(".base_layer.", "."): v.clone() for k, v in pipe.transformer.state_dict().items() if ".lora_" not in k
    }


def _max_change(a, b) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_the_table_and_the_tiny_model_are_chroma(pipe):
    spec = families.spec("chroma")
    assert (spec.default_steps, spec.default_guidance, spec.guidance_distilled) == (35, 5.0, False)
    assert type(pipe).__name__ == "ChromaPipeline" and type(pipe.transformer).__name__ == "ChromaTransformer2DModel"
    assert type(pipe.text_encoder).__name__ == "T5EncoderModel" and not hasattr(pipe, "text_encoder_2")
    assert families.by_pipeline_class("ChromaPipeline") == (Family.CHROMA,)
    assert families.guess_from_name("Chroma1-HD") is Family.CHROMA
    assert families.by_hub_base("lodestones/chroma1-hd") is Family.CHROMA
    from app.core.hub.models import SearchQuery, family_of_base

    assert ("filter", "base_model:adapter:lodestones/Chroma1-HD") in SearchQuery(family=Family.CHROMA).params()
    assert family_of_base(["lodestones/Chroma1-Base"]) is Family.CHROMA


def test_chroma_renders_with_real_cfg_and_its_negative_prompt(chroma_dir, tmp_path):
    renderer = Renderer()
    values = dict(base=str(chroma_dir), prompt="a red square", seed=5, steps=3, width=64, height=64, guidance=5.0)
    a = renderer.render(GenerateRequest.from_dict(values), out_path=tmp_path / "a.png")
    b = renderer.render(GenerateRequest.from_dict(values | {"negative": "blurry"}), out_path=tmp_path / "b.png")
    assert renderer.loaded.distilled is False
    pixels = [np.asarray(Image.open(r.path).convert("RGB"), dtype=np.int16) for r in (a, b)]
    assert not np.array_equal(*pixels)  # the negative prompt is used (real CFG)
    assert b.meta["negative"] == "blurry"


@pytest.mark.slow
def test_weight_zero_is_bit_exact_and_weight_one_matches_diffusers(pipe, mixer, chroma_dir, tmp_path):
    base_weights, base_image = weights_of(pipe), render_np(pipe)
    files = {lay: FA.flux_lora(pipe, tmp_path / f"{lay}.safetensors", lay, seed=3, te=False, metadata=False, skip=NOT_IN_DIFFUSERS) for lay in ("diffusers", "kohya", "comfy")}  # fmt: skip
    report = mixer.set_mix([AdapterEntry(str(p), 0.0) for p in files.values()])
    assert report.refused == [] and len(report.applied) == 3  # Flux-named files fit Chroma
    assert np.array_equal(render_np(pipe), base_image)
    assert all(torch.equal(v, base_weights[k]) for k, v in weights_of(pipe).items())
    for layout, path in files.items():
        report = mixer.set_mix([AdapterEntry(str(path), 1.0)])
        assert report.refused == [] and report.warnings == [], layout
        ours = weights_of(pipe)
        reference = load_tiny_pipeline(chroma_dir)
        reference.load_lora_weights(str(path), adapter_name=layout)
        reference.fuse_lora(components=["transformer"], lora_scale=1.0)
        theirs = weights_of(reference)
        assert _max_change(ours, base_weights) > 0.3 and _max_change(theirs, base_weights) > 0.3, layout
        assert _max_change(ours, theirs) < 1e-5, layout
    np.testing.assert_allclose(render_np(pipe), render_np(reference), atol=1e-4)  # the comfy one


def test_the_approximator_and_fused_layers_follow_diffusers_single_file_names(pipe, mixer, tmp_path):
    """BFL's ``distilled_guidance_layer.layers.N.in_layer`` is diffusers' ``linear_1`` (as its
    convert_chroma_transformer_checkpoint_to_diffusers renames it); single blocks' linear1 is q/k/v + MLP."""
    gen = torch.Generator().manual_seed(4)
    t = pipe.transformer
    inner, approx = t.inner_dim, t.distilled_guidance_layer.layers[0].linear_1.weight.shape
    fused = inner * 3 + t.single_transformer_blocks[0].proj_mlp.weight.shape[0]
    sd = {}
    for name, (rows, cols) in {"distilled_guidance_layer_layers_0_in_layer": approx, "single_blocks_0_linear1": (fused, inner)}.items():  # fmt: skip
        sd[f"lora_unet_{name}.lora_down.weight"] = torch.randn(2, cols, generator=gen)
        sd[f"lora_unet_{name}.lora_up.weight"] = torch.randn(rows, 2, generator=gen)
    path = tmp_path / "approx.safetensors"
    save_file(sd, str(path))
    info = inspect_adapter(path)
    assert info.family is Family.CHROMA and "distilled_guidance_layer" in info.family_evidence
    report = mixer.set_mix([AdapterEntry(str(path), 1.0)])
    assert report.refused == [] and report.warnings == []

    def change(path: str) -> torch.Tensor:
        return t.get_submodule(path).weight.detach() - mixer.base_weight(Target(info.parts[0], path))

    def delta(name: str) -> torch.Tensor:
        return sd[f"lora_unet_{name}.lora_up.weight"] @ sd[f"lora_unet_{name}.lora_down.weight"]

    torch.testing.assert_close(change("distilled_guidance_layer.layers.0.linear_1"), delta("distilled_guidance_layer_layers_0_in_layer"))  # fmt: skip
    d = delta("single_blocks_0_linear1")
    for i, name in enumerate(("attn.to_q", "attn.to_k", "attn.to_v")):
        torch.testing.assert_close(change(f"single_transformer_blocks.0.{name}"), d[i * inner : (i + 1) * inner])
    torch.testing.assert_close(change("single_transformer_blocks.0.proj_mlp"), d[3 * inner :])


def _forward(transformer, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    cfg = transformer.config
    inputs = {
        "hidden_states": torch.randn(1, 16, cfg.in_channels, generator=gen),
        "encoder_hidden_states": torch.randn(1, 8, cfg.joint_attention_dim, generator=gen),
        "timestep": torch.tensor([0.6]),
        "img_ids": torch.randint(0, 4, (16, 3), generator=gen).float(),
        "txt_ids": torch.zeros(8, 3),
    }
    with torch.inference_mode():
        return transformer(**inputs, return_dict=False)[0].clone()


def test_a_lycoris_lokr_matches_lycoris_own_forward(chroma_dir, tmp_path):
    from lycoris import LycorisNetwork, create_lycoris

    reference = load_tiny_pipeline(chroma_dir)
    bare = _forward(reference.transformer)
    old = LycorisNetwork.LORA_PREFIX, LycorisNetwork.TARGET_REPLACE_MODULE
    LycorisNetwork.LORA_PREFIX = "lycoris"
    LycorisNetwork.TARGET_REPLACE_MODULE = ["ChromaTransformerBlock", "ChromaSingleTransformerBlock"]
    try:
        net = create_lycoris(reference.transformer, 1.0, linear_dim=4, linear_alpha=2.0, algo="lokr", preset="full")
    finally:
        LycorisNetwork.LORA_PREFIX, LycorisNetwork.TARGET_REPLACE_MODULE = old
    net.apply_to()
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for _, p in net.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    path = tmp_path / "lokr.safetensors"
    save_file({k: v.detach().clone().contiguous() for k, v in net.state_dict().items()}, str(path))
    theirs = _forward(reference.transformer)

    pipe = load_tiny_pipeline(chroma_dir)
    mixer = AdapterMixer(pipe, Family.CHROMA, base=chroma_dir)
    report = mixer.set_mix([AdapterEntry(str(path), 1.0)])
    assert report.refused == [] and report.warnings == []
    assert float((theirs - bare).abs().max()) > 0.05
    torch.testing.assert_close(_forward(pipe.transformer), theirs, atol=2e-5, rtol=1e-4)
    mixer.clear()
    assert torch.equal(_forward(pipe.transformer), bare)


def test_flux_named_files_stay_flux_and_say_chroma_looks_the_same(pipe, tmp_path):
    plain = FA.flux_lora(pipe, tmp_path / "plain.safetensors", "kohya", te=False, metadata=False)
    info = inspect_adapter(plain)
    assert info.family is Family.FLUX1 and "Chroma file without metadata has the same names" in info.family_evidence
    assert info.family_mismatch(Family.CHROMA) is None  # indistinguishable: not refused on Chroma
    flux = tmp_path / "flux.safetensors"
    save_file(load_file(str(plain)), str(flux), metadata={"ss_base_model_version": "flux1"})
    assert inspect_adapter(flux).family_mismatch(Family.CHROMA) is None  # Flux LoRAs go on Chroma too
    labelled = tmp_path / "labelled.safetensors"
    save_file(load_file(str(plain)), str(labelled), metadata={"ss_base_model_version": "chroma"})
    assert inspect_adapter(labelled).family is Family.CHROMA
    assert "made for Chroma, but the base model is Flux.1" in inspect_adapter(labelled).family_mismatch(Family.FLUX1)
    arch = tmp_path / "arch.safetensors"
    save_file(load_file(str(plain)), str(arch), metadata={"modelspec.architecture": "chroma/lora"})
    assert inspect_adapter(arch).family is Family.CHROMA


def test_wrong_family_adapters_are_refused_before_loading(pipe, sd1_pipe, rgb, tmp_path):
    path = tmp_path / "chroma.safetensors"
    plain = FA.flux_lora(pipe, tmp_path / "p.safetensors", "kohya", te=False, metadata=False)
    save_file(load_file(str(plain)), str(path), metadata={"ss_base_model_version": "chroma"})
    with pytest.raises(IncompatibleAdapter) as err:
        read_adapter(path, LayerIndex(sd1_pipe), Family.SD1)
    assert str(err.value) == f"{path}: made for Chroma, but the base model is SD 1.x; pick a Chroma base model for it"
    with pytest.raises(IncompatibleAdapter) as err:
        read_adapter(rgb["red"], LayerIndex(pipe), Family.CHROMA)
    assert (
        str(err.value)
        == f"{rgb['red']}: made for SD 1.x, but the base model is Chroma; pick a SD 1.x base model for it"
    )


@pytest.mark.slow
def test_training_lowers_the_fixed_loss_and_the_saved_files_reload_in_diffusers(chroma_dir, red_dataset):
    from train_helpers import small_config

    from app.core.safetensors_header import read_header
    from app.engine.training import Trainer
    from app.engine.training.objective import fixed_loss

    config = small_config(
        chroma_dir,
        red_dataset,
        name="chroma",
        steps=20,
        network={"targets": "attention_ff"},
        optimizer={"learning_rate": 1e-2},
        output={"save_every": 0, "diffusers_copy": True},
        sample={"every": 20, "prompts": ["sks"], "negative": "blurry", "steps": 2, "guidance": 5.0},
    )
    trainer = Trainer(config)
    result = trainer.run()
    assert result.status == "done"
    session, transformer = trainer.session, trainer.session.net.unet
    assert session.pipe.text_encoder is None  # T5 left once the captions were cached
    assert list(result.run_dir.rglob("*.png"))  # the sample rendered from cached prompt and negative
    transformer.eval()
    with torch.no_grad():
        trained_loss = fixed_loss(session)
        transformer.disable_adapters()
        base_loss = fixed_loss(session)
        transformer.enable_adapters()
    print(f"chroma fixed loss {base_loss:.4f} -> {trained_loss:.4f}")
    assert trained_loss < 0.97 * base_loss, (base_loss, trained_loss)

    header = read_header(result.final)
    assert header.metadata["ss_base_model_version"] == "chroma"
    assert header.metadata["modelspec.architecture"] == "chroma/lora"
    names = {k.split(".", 1)[0] for k in header.tensors}
    assert {"lora_unet_double_blocks_0_img_attn_qkv", "lora_unet_single_blocks_1_linear1"} <= names
    assert all(n.startswith("lora_unet_") and "_mod" not in n for n in names)

    prompt, negative = session.text_cache.get_many(["sks", ""])
    kwargs = CHROMA.prompt_kwargs(prompt) | CHROMA.negative_prompt_kwargs(negative)

    def render(p) -> np.ndarray:
        with torch.inference_mode():
            out = p(**kwargs, num_inference_steps=2, guidance_scale=5.0, width=64, height=64,
                    generator=torch.Generator().manual_seed(0), output_type="np")  # fmt: skip
        return out.images[0]

    ours = render(session.pipe)
    copy = load_tiny_pipeline(chroma_dir)
    before = render(copy)
    copy.load_lora_weights(str(result.run_dir / "diffusers"))
    assert abs(render(copy) - ours).max() < 1e-5 and abs(ours - before).max() > 1e-3
    # The kohya file: diffusers splits linear1 at the real widths only, so compare the double blocks.
    for name, param in transformer.named_parameters():
        if name.startswith("single_transformer_blocks.") and "lora_B" in name:
            param.data.zero_()
    double_only = result.run_dir / "double-only.safetensors"
    save_file({k: v for k, v in load_file(str(result.final)).items() if "_single_blocks_" not in k}, str(double_only))
    fresh = load_tiny_pipeline(chroma_dir)
    fresh.load_lora_weights(str(double_only))
    assert abs(render(fresh) - render(session.pipe)).max() < 1e-5


def test_the_bundled_chroma1_hd_config_builds_its_real_size_and_single_files_are_told():
    import math

    from app.engine.single_file import detect_checkpoint
    from app.engine.skeleton import component_shapes

    # Chroma1-HD's 8.9 B transformer (the model card's figure), T5-XXL's encoder as Flux.1's.
    assert sum(math.prod(s) for s in component_shapes("chroma1-hd", "transformer").values()) == 8_899_983_424
    for prefix in ("", "model.diffusion_model."):
        names = {prefix + "double_blocks.0.img_attn.qkv.weight": [9216, 3072]}
        assert detect_checkpoint(names).family is Family.FLUX1  # BFL names alone: Flux.1 [schnell]
        names[prefix + "distilled_guidance_layer.in_proj.bias"] = [5120]
        info = detect_checkpoint(names)
        assert info.family is Family.CHROMA and info.denoiser_only
        assert CHROMA.single_file_problem(info).startswith("a Chroma single file; LoRA Loom does not load Chroma")
