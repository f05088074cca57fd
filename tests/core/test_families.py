"""The family table gives the answers the scattered constants gave before it (issue 12)."""

from __future__ import annotations

import pytest

from app.core import families
from app.core.configs import Scheduler
from app.core.families import FAMILIES, BlockLayout, Family

# The constants as they were before the table (copied verbatim from the old modules).
OLD_BASE_MODEL_VERSION = {Family.SD1: "sd_v1", Family.SD2: "sd_v2", Family.SDXL: "sdxl_base_v1-0"}
OLD_ARCHITECTURE = {
    Family.SD1: "stable-diffusion-v1/lora",
    Family.SD2: "stable-diffusion-v2-512/lora",
    Family.SDXL: "stable-diffusion-xl-v1-base/lora",
}
OLD_BASE_VERSION = {"sd_v1": Family.SD1, "sd_v2": Family.SD2, "sdxl_base_v1-0": Family.SDXL}
OLD_ARCH_PREFIX = [
    ("stable-diffusion-xl", Family.SDXL),
    ("stable-diffusion-v2", Family.SD2),
    ("stable-diffusion-v1", Family.SD1),
]
OLD_CROSS_WIDTH = {768: Family.SD1, 1024: Family.SD2, 2048: Family.SDXL}
OLD_TE_WIDTH = {768: Family.SD1, 1024: Family.SD2}
OLD_PIPELINE_FAMILY = {"StableDiffusionXLPipeline": Family.SDXL, "StableDiffusionXLImg2ImgPipeline": Family.SDXL}
OLD_SD_PIPELINES = {"StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"}
OLD_FAMILY_BASES = {
    Family.SD1: (
        "runwayml/stable-diffusion-v1-5",
        "stable-diffusion-v1-5/stable-diffusion-v1-5",
        "CompVis/stable-diffusion-v1-4",
        "CompVis/stable-diffusion-v1-5",
    ),
    Family.SD2: (
        "stabilityai/stable-diffusion-2-1",
        "stabilityai/stable-diffusion-2-1-base",
        "stabilityai/stable-diffusion-2",
        "stabilityai/stable-diffusion-2-base",
    ),
    Family.SDXL: ("stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-xl-refiner-1.0"),
}
OLD_FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL"}
OLD_FAMILY_COLORS = {"sd1": "#1e88e5", "sd2": "#00897b", "sdxl": "#8e24aa"}
OLD_SIZE_PRESETS = [
    ("SD 1.x", 512, 512),
    ("SD 1.x", 512, 768),
    ("SD 1.x", 768, 512),
    ("SD 2.x", 768, 768),
    ("SD 2.x", 512, 512),
    ("SDXL", 1024, 1024),
    ("SDXL", 832, 1216),
    ("SDXL", 1216, 832),
    ("SDXL", 896, 1152),
    ("SDXL", 1152, 896),
    ("SDXL", 768, 1344),
]
OLD_TE_PREFIXES = {Family.SD1: ("lora_te",), Family.SD2: ("lora_te",), Family.SDXL: ("lora_te1", "lora_te2")}
OLD_VARIANT_FAMILY = {"sd15": Family.SD1, "sd21": Family.SD2, "sd21-base": Family.SD2, "sdxl": Family.SDXL}
OLD_IMPLEMENTATION = {
    Family.SD1: "diffusers",
    Family.SD2: "diffusers",
    Family.SDXL: "https://github.com/Stability-AI/generative-models",
}


# The families the table was checked against when it replaced the constants (issue 12).
SD_FAMILIES = (Family.SD1, Family.SD2, Family.SDXL)


def test_family_values_are_the_ones_on_disk():
    # the values already on disk keep their place; newer families come after them
    assert [f.value for f in Family][:4] == ["sd1", "sd2", "sdxl", "flux1"]
    assert [f.id for f in FAMILIES] == list(Family)


def test_metadata_written_is_unchanged():
    for fam in SD_FAMILIES:
        s = families.spec(fam)
        assert s.base_version == OLD_BASE_MODEL_VERSION[fam]
        assert s.architecture_for(False) == OLD_ARCHITECTURE[fam]
        assert s.ss_v2 is (fam is Family.SD2)
        assert s.implementation == OLD_IMPLEMENTATION[fam]
        assert s.te_prefixes == OLD_TE_PREFIXES[fam]
    assert families.spec(Family.SD2).architecture_for(True) == "stable-diffusion-v2-768-v/lora"
    assert families.spec(Family.SD1).architecture_for(True) == OLD_ARCHITECTURE[Family.SD1]
    assert families.spec(Family.SDXL).architecture_for(True) == OLD_ARCHITECTURE[Family.SDXL]


def test_metadata_read_is_unchanged():
    for value, fam in OLD_BASE_VERSION.items():
        assert families.by_base_version(value) is fam
    assert families.by_base_version("sd_v3") is None and families.by_base_version(None) is None
    for arch in (
        "stable-diffusion-xl-v1-base/lora",
        "stable-diffusion-v2-768-v/lora",
        "stable-diffusion-v1/lora",
        "stable-diffusion-v2-512/lora",
        "",
    ):
        old = next((fam for prefix, fam in OLD_ARCH_PREFIX if arch.startswith(prefix)), None)
        assert families.by_architecture(arch) is old, arch
    assert families.by_architecture("sd3-medium/lora") is None


def test_flux_metadata_is_what_sd_scripts_writes():
    """sd-scripts' Flux LoRAs (the layout ComfyUI and Forge load) carry these values."""
    s = families.spec(Family.FLUX1)
    assert (s.base_version, s.architecture_for(False)) == ("flux1", "flux-1-dev/lora")
    assert families.by_base_version("flux1") is Family.FLUX1
    assert families.by_architecture("flux-1-schnell/lora") is Family.FLUX1
    assert s.te_prefixes == ("lora_te1", "lora_te3")  # CLIP-L, T5-XXL (networks/lora_flux.py)
    assert families.by_pipeline_class("FluxPipeline") == (Family.FLUX1,)
    assert families.by_hub_base("black-forest-labs/flux.1-dev") is Family.FLUX1
    assert (s.default_steps, s.default_guidance) == (28, 3.5)
    assert s.render_defaults(distilled=True) == (4, 0.0)  # [schnell]
    assert s.render_defaults() == (28, 3.5)
    assert families.spec(Family.SD1).render_defaults(distilled=True) == (20, 7.0)  # SD has no distilled model
    assert s.scheduler_problem("DDIM") == (
        "Flux.1 samples by flow matching: the DDIM sampler does not apply; pick Euler, Euler a or UniPC"
    )
    assert s.scheduler_problem("Euler a") is None and families.spec(Family.SD1).scheduler_problem("DDIM") is None


@pytest.mark.parametrize("width", [32, 48, 64, 768, 1024, 1280, 2048])
def test_width_lookups_are_unchanged(width):
    assert families.by_cross_width(width) is OLD_CROSS_WIDTH.get(width)
    assert families.by_text_width(width) is OLD_TE_WIDTH.get(width)


def test_pipeline_class_lookup_is_unchanged():
    for cls, fam in OLD_PIPELINE_FAMILY.items():
        assert families.by_pipeline_class(cls) == (fam,)
    for cls in OLD_SD_PIPELINES:
        assert families.by_pipeline_class(cls) == (Family.SD1, Family.SD2)
    assert families.by_pipeline_class("StableDiffusion3Pipeline") == ()


def test_hub_bases_labels_colours_sizes_variants_are_unchanged():
    for fam in SD_FAMILIES:
        s = families.spec(fam)
        assert s.hub_bases == OLD_FAMILY_BASES[fam]
        assert s.label == OLD_FAMILY_NAMES[fam.value] == families.label(fam.value)
        assert s.color == OLD_FAMILY_COLORS[fam.value]
        for base in OLD_FAMILY_BASES[fam]:
            assert families.by_hub_base(base.upper()) is fam
    assert [(f.label, w, h) for f in FAMILIES if f.id in SD_FAMILIES for w, h in f.size_presets] == OLD_SIZE_PRESETS
    assert families.all_variants()[:6] == (*OLD_VARIANT_FAMILY, "flux1-dev", "flux1-schnell")
    for variant, fam in OLD_VARIANT_FAMILY.items():
        assert families.by_variant(variant) is fam
    assert families.label("sd3") == "sd3" and families.label(None) == ""


def test_every_entry_is_complete():
    for s in FAMILIES:
        for field, value in vars(s).items():
            # Only a family with a distilled model has one; UNet families have no transformer
            # roots or name markers; a family without block weights has no blocks.
            optional = ("architecture_v_prediction", "hub_tags", "distilled")
            optional += ("original_roots", "diffusers_roots", "adapter_markers")
            if s.block_layout is BlockLayout.NONE:
                optional += ("blocks", "text_blocks")
            if field not in optional:
                assert value not in ("", (), None), f"{s.id.value}: {field} is empty"
        assert len(s.text_widths) == len(s.te_prefixes)
        assert s.default_size in s.size_presets
        assert Scheduler(s.default_scheduler) and s.default_guidance > 0  # a sampler renders know
        assert s.default_scheduler in s.schedulers and all(Scheduler(x) for x in s.schedulers)


def test_render_defaults_are_the_ones_sd_always_used():
    """Guidance 7.0 and Euler were the GUI's and the CLI's defaults before the table had them."""
    sd = {(s.default_guidance, s.default_scheduler) for s in FAMILIES if s.id in SD_FAMILIES}
    assert sd == {(7.0, Scheduler.EULER.value)}


# ---------------------------------------------------------------- the Hub's guess from a name


def _old_guess(base_ids: list[str]) -> Family | None:
    """core/hub.py's family_of_base before the table (verbatim but for the names)."""
    import re

    lower = {b.lower(): fam for fam, bases in OLD_FAMILY_BASES.items() for b in bases}
    for base in base_ids:
        if base.lower() in lower:
            return lower[base.lower()]
    for base in base_ids:
        name = base.lower().rsplit("/", 1)[-1]
        if "xl" in re.split(r"[^a-z0-9]+", name) or re.search(r"(sdxl|xl[-_]|[-_]xl|pony|illustrious)", name):
            return Family.SDXL
        if re.search(r"(stable-diffusion-2|sd-?2)", name):
            return Family.SD2
        if re.search(r"(stable-diffusion-v?1|sd-?1|v1-5)", name):
            return Family.SD1
    return None


@pytest.mark.parametrize(
    "bases",
    [
        ["Runwayml/Stable-Diffusion-v1-5"],
        ["me/ponyDiffusionV6XL"],
        ["me/juggernaut-xl-v9"],
        ["me/xl"],
        ["me/model-XL_v2"],
        ["me/illustrious-v1-5"],
        ["me/sd-2-finetune"],
        ["me/stable-diffusion-2-1-anime"],
        ["me/sd15-anime"],
        ["me/sd-1-anime"],
        ["me/v1-5-pruned"],
        ["me/sd3-dev"],
        ["me/axle"],
        ["me/sdxl2"],
        [],
        ["me/unknown", "stabilityai/stable-diffusion-xl-base-1.0"],
        ["me/sd-2", "me/v1-5"],
    ],
)
def test_hub_family_guess_is_unchanged(bases):
    from app.core.hub.models import family_of_base

    assert family_of_base(bases) is _old_guess(bases)


# ---------------------------------------------------------------- nothing else decides by family

_FAMILY_FILES = ("app/core/families.py", "app/engine/families/")


def _app_sources():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for path in sorted((root / "app").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if not rel.startswith(_FAMILY_FILES):
            yield rel, path.read_text(encoding="utf-8")


def test_no_family_member_is_named_outside_the_family_files():
    import re

    found = [
        f"{rel}:{n}"
        for rel, text in _app_sources()
        for n, line in enumerate(text.splitlines(), 1)
        if re.search(r"Family\.(SD1|SD2|SDXL)\b", line)
    ]
    assert found == []


def test_no_family_value_is_compared_or_tabled_outside_the_family_files():
    """A "sd1" / "sd2" / "sdxl" literal is allowed only as an assigned default (``default="sd1"``,
    ``family: str = "sd1"``, an enum member's value); in a comparison, a tuple or a dict it is a
    family branch or table that belongs in app/core/families.py."""
    import ast
    import io
    import tokenize

    found = []
    for rel, text in _app_sources():
        previous = None
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
                continue
            if tok.type == tokenize.STRING and not tok.string.startswith(("f", "F", "rf", "fr")):
                value = ast.literal_eval(tok.string)
                if value in ("sd1", "sd2", "sdxl") and not (previous and previous.string == "="):
                    found.append(f"{rel}:{tok.start[0]}: {tok.line.strip()}")
            previous = tok
    assert found == []
