"""Flux.1 LoRA repos for the loopback fake Hub: a [dev] one (kohya layout, as sd-scripts and
FluxGym save) and a [schnell] one (diffusers layout, as ai-toolkit saves), tagged as the Hub tags them."""

from __future__ import annotations

from fake_hub import FakeFile, FakeRepo, png_bytes, readme, safetensors_bytes

DEV, SCHNELL = "black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-schnell"


def _tags(base: str) -> list[str]:
    return ["diffusers", "lora", "text-to-image", "flux", f"base_model:{base}", f"base_model:adapter:{base}"]


def flux_repos() -> list[FakeRepo]:
    kohya = safetensors_bytes(
        {
            "lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": ([16, 3072], "F16"),
            "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": ([9216, 16], "F16"),
        },
        {"ss_base_model_version": "flux1", "modelspec.trigger_phrase": "ohwx dog"},
    )
    diffusers = safetensors_bytes(
        {
            "transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight": ([8, 3072], "F16"),
            "transformer.single_transformer_blocks.0.attn.to_q.lora_B.weight": ([3072, 8], "F16"),
        }
    )
    dev_card = {"base_model": DEV, "instance_prompt": "ohwx dog", "license": "other"}
    schnell_card = {"base_model": SCHNELL, "instance_prompt": "flat colours", "license": "apache-2.0"}
    return [
        FakeRepo(
            "gina/flux-dog-lora",
            {
                "README.md": FakeFile(readme(dev_card, "# Dog\n\nA dog for Flux.1 [dev]."), lfs=False),
                "dog.safetensors": FakeFile(kohya),
                "dog.preview.png": FakeFile(png_bytes((200, 120, 30))),
            },
            dev_card,
            _tags(DEV),
            downloads=700,
        ),
        FakeRepo(
            "hank/schnell-flat-lora",
            {"pytorch_lora_weights.safetensors": FakeFile(diffusers)},
            schnell_card,
            _tags(SCHNELL),
            downloads=60,
        ),
    ]
