"""Rendering Flux.1 from the tiny Flux: [dev]'s distilled guidance and no negative prompt,
[schnell] ignoring guidance, the flow-matching samplers, seeds, and Forge-style PNG parameters."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file

from app.cli import main
from app.core.configs import GenerateRequest
from app.core.pngmeta import PARAMETERS_KEY, parse_parameters
from app.engine.rendering import Renderer, RenderFailed


@pytest.fixture(scope="module")
def renderer():
    return Renderer()


@pytest.fixture(scope="module")
def tiny_schnell(tiny_flux1, tmp_path_factory):
    """The tiny Flux as [schnell] is shipped: a transformer without the guidance embedding."""
    out = tmp_path_factory.mktemp("schnell") / "tiny-flux1-schnell"
    shutil.copytree(tiny_flux1, out)
    config_path = out / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config["guidance_embeds"] = False
    config_path.write_text(json.dumps(config))
    weights = out / "transformer" / "diffusion_pytorch_model.safetensors"
    state = {k: v for k, v in load_file(weights).items() if "guidance_embedder" not in k}
    save_file(state, weights)
    return out


def _request(base, **kw):
    values = dict(base=str(base), prompt="a red square", seed=5, steps=3, width=64, height=64, guidance=3.5)
    values.update(kw)
    return GenerateRequest.from_dict(values)


def _pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_flux_dev_renders_reproducibly_with_distilled_guidance(renderer, tiny_flux1, tmp_path):
    a = renderer.render(_request(tiny_flux1), out_path=tmp_path / "a.png")
    b = renderer.render(_request(tiny_flux1), out_path=tmp_path / "b.png")
    other_seed = renderer.render(_request(tiny_flux1, seed=6), out_path=tmp_path / "c.png")
    more_guidance = renderer.render(_request(tiny_flux1, guidance=7.0), out_path=tmp_path / "d.png")
    assert renderer.loaded.distilled is False
    assert np.array_equal(_pixels(a.path), _pixels(b.path))
    assert not np.array_equal(_pixels(a.path), _pixels(other_seed.path))
    assert not np.array_equal(_pixels(a.path), _pixels(more_guidance.path))  # [dev] reads the guidance
    text = Image.open(a.path).text[PARAMETERS_KEY]
    # As Forge writes a Flux picture: CFG 1 (there is none), the distilled guidance beside it.
    assert text.splitlines()[-1].startswith(
        "Steps: 3, Sampler: Euler, CFG scale: 1, Distilled CFG Scale: 3.5, Seed: 5, Size: 64x64"
    )
    assert parse_parameters(text)["guidance"] == 3.5  # restoring the picture gives the guidance back


def test_a_negative_prompt_is_left_out_for_flux(renderer, tiny_flux1, tmp_path):
    plain = renderer.render(_request(tiny_flux1), out_path=tmp_path / "a.png")
    negative = renderer.render(_request(tiny_flux1, negative="blurry"), out_path=tmp_path / "b.png")
    assert np.array_equal(_pixels(plain.path), _pixels(negative.path))
    assert negative.meta["negative"] == "" and "Negative prompt" not in Image.open(negative.path).text[PARAMETERS_KEY]


def test_schnell_ignores_guidance_and_says_so(renderer, tiny_schnell, tmp_path):
    a = renderer.render(_request(tiny_schnell, guidance=3.5), out_path=tmp_path / "a.png")
    b = renderer.render(_request(tiny_schnell, guidance=9.0), out_path=tmp_path / "b.png")
    assert renderer.loaded.distilled is True and renderer.loaded.describe()["distilled"] is True
    assert np.array_equal(_pixels(a.path), _pixels(b.path))
    assert a.meta["guidance"] == 0.0 and "distilled_guidance" not in a.meta
    assert "Distilled CFG Scale" not in Image.open(a.path).text[PARAMETERS_KEY]


@pytest.mark.parametrize("scheduler", ["Euler a", "UniPC"])
def test_the_flow_matching_samplers_render(renderer, tiny_flux1, tmp_path, scheduler):
    result = renderer.render(_request(tiny_flux1, scheduler=scheduler, steps=4), out_path=tmp_path / "s.png")
    euler = renderer.render(_request(tiny_flux1, steps=4), out_path=tmp_path / "e.png")
    pixels = _pixels(result.path)
    assert pixels.std() > 0 and not np.array_equal(pixels, _pixels(euler.path))
    assert result.meta["scheduler"] == scheduler


@pytest.mark.parametrize("scheduler", ["DDIM", "DPM++ 2M Karras"])
def test_samplers_without_a_flow_form_are_refused_in_a_sentence(renderer, tiny_flux1, tmp_path, scheduler):
    with pytest.raises(RenderFailed) as err:
        renderer.render(_request(tiny_flux1, scheduler=scheduler), out_path=tmp_path / "x.png")
    assert str(err.value) == (
        f"Flux.1 samples by flow matching: the {scheduler} sampler does not apply; pick Euler, Euler a or UniPC"
    )
    assert not (tmp_path / "x.png").exists()


def test_cli_generate_uses_the_flux_defaults_and_refuses_ddim_before_loading(
    tiny_flux1, tiny_schnell, tmp_path, capsys
):
    from app.cli_render import _defaults_for

    assert _defaults_for(str(tiny_flux1))[2:] == (3.5, "Euler")  # [dev]: distilled guidance 3.5
    assert _defaults_for(str(tiny_schnell))[2] == 0.0  # [schnell]: no guidance
    out = tmp_path / "flux.png"
    args = ["generate", "--base", str(tiny_flux1), "--prompt", "a cat", "--seed", "2", "--device", "cpu"]
    assert main([*args, "--out", str(out), "--negative", "blurry"]) == 0
    err = capsys.readouterr().err
    assert "loraloom: warning: Flux.1 takes no negative prompt; it is left out" in err
    assert parse_parameters(Image.open(out).text[PARAMETERS_KEY])["steps"] == 4  # the tiny model's default
    assert main([*args, "--out", str(tmp_path / "ddim.png"), "--scheduler", "DDIM"]) == 1
    err = capsys.readouterr().err
    assert "loading" not in err  # refused before the model loads
    assert err.strip().endswith("the DDIM sampler does not apply; pick Euler, Euler a or UniPC")


def test_cli_refuses_a_flux_adapter_on_sd_and_an_sd_adapter_on_flux_before_loading(
    tiny_sd1, tiny_flux1, tmp_path, capsys
):
    from tests.core.test_adapters import kohya_sd1, write
    from tests.core.test_flux_adapters import LAYOUTS

    flux_lora = write(tmp_path / "flux.safetensors", LAYOUTS["kohya"][1])
    sd_lora = write(tmp_path / "sd.safetensors", kohya_sd1(), {"ss_base_model_version": "sd_v1"})
    for base, lora, made_for, base_label in (
        (tiny_sd1, flux_lora, "Flux.1", "SD 1.x"),
        (tiny_flux1, sd_lora, "SD 1.x", "Flux.1"),
    ):
        args = [
            "generate",
            "--base",
            str(base),
            "--prompt",
            "x",
            "--lora",
            f"{lora}:1",
            "--out",
            str(tmp_path / "o.png"),
        ]
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "loading" not in err
        assert err.strip().splitlines()[-1] == (
            f"loraloom: error: {lora}: made for {made_for}, but the base model is {base_label}; "
            f"pick a {made_for} base model for it"
        )
    assert not (tmp_path / "o.png").exists()
