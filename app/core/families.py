"""Base-model families as data: one table, one frozen entry per family.

Everything the app decides by family without torch reads this table: the kohya and
modelspec metadata written into and read from adapter files, how a family is told from
tensor widths or a pipeline class, the Hub's base-model ids, the labels, colours and
sizes the GUI shows. What needs torch (pipeline classes, prompt encoding, the tiny test
models) lives in ``app/engine/families/<id>.py``. Adding a family = one entry here + one
engine file + its tiny model + tests (CONTRIBUTING.md, "Add a base-model family").

The ``Family`` values are on disk (TOML configs, library JSON, tiny-model info files):
never change them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum


class BlockLayout(str, Enum):
    """How a family's layer names map to its blocks (app.core.block_weights)."""

    SD_UNET = "sd-unet"  # input_blocks / middle_block / output_blocks (or diffusers' down/mid/up)
    FLUX_DIT = "flux-dit"  # double_blocks / single_blocks (or diffusers' transformer_blocks)
    NONE = "none"  # no per-block weights for the family yet (its ``blocks`` is empty)


class Family(str, Enum):
    SD1 = "sd1"
    SD2 = "sd2"
    SDXL = "sdxl"
    FLUX1 = "flux1"
    ZIMAGE = "zimage"


@dataclass(frozen=True)
class Distilled:
    """A timestep-distilled model of a family (FLUX.1 [schnell]): few steps, no guidance input."""

    label: str
    steps: int
    guidance: float  # recorded for a render: the model has no guidance input to give it to
    hub_base: str  # its Hub id (one of the family's hub_bases): the Hub search filter for its adapters


@dataclass(frozen=True)
class FamilySpec:
    id: Family
    label: str  # what users read: "SD 1.x"
    # kohya ``ss_base_model_version``: the value written, and every value read as this family.
    base_version: str
    base_versions_read: tuple[str, ...]
    ss_v2: bool  # kohya's ``ss_v2`` flag (written, and read as evidence)
    # modelspec: the architecture written (and the v-prediction variant's, where the family has
    # one), the prefix read as this family, and the implementation URL.
    architecture: str
    architecture_v_prediction: str | None
    architecture_prefix: str
    implementation: str
    # Text encoders in the pipeline's order: hidden widths and kohya key prefixes.
    text_widths: tuple[int, ...]
    te_prefixes: tuple[str, ...]
    cross_width: int  # width of the text features the UNet's cross-attention reads
    # Tensor-name evidence when a file has no metadata.
    size_conditioning: bool  # the UNet has label_emb (size/crop conditioning)
    stacked_transformers: bool  # several transformer blocks in one attention
    transformer_denoiser: bool  # the denoiser is a transformer (BFL's double/single blocks), not a UNet
    pipeline_classes: tuple[str, ...]  # diffusers model_index.json ``_class_name`` values
    variants: tuple[str, ...]  # bundled configs (app.engine.single_file.Variant values)
    default_steps: int
    default_size: tuple[int, int]
    default_guidance: float  # classifier-free guidance scale a render starts from
    default_scheduler: str  # an app.core.configs.Scheduler value ("Euler", as A1111 names it)
    schedulers: tuple[str, ...]  # the Scheduler values that sample this family (the rest are refused)
    # The denoiser predicts a flow (velocity): rendering uses the flow-matching samplers.
    flow_matching: bool
    # Guidance is an input the denoiser was distilled with (Flux.1 [dev]), not classifier-free
    # guidance: there is no negative prompt, and the picture says "Distilled CFG Scale" as Forge does.
    guidance_distilled: bool
    size_presets: tuple[tuple[int, int], ...]  # the sizes the family was trained at
    color: str  # the Library card badge
    # Hub: ids a LoRA repo names in ``base_model`` (the first is the search filter), a regex a
    # fine-tune's name matches, and repo tags that say the family.
    hub_bases: tuple[str, ...]
    hub_name_pattern: str
    # Block weights: the blocks a per-block strength vector runs over, named as the LoRA Block
    # Weight extension for A1111 names them (its full form for this family; app.core.block_weights).
    blocks: tuple[str, ...]
    text_blocks: tuple[str, ...]  # the block of each text encoder, in the pipeline's order
    block_layout: BlockLayout
    hub_tags: tuple[str, ...] = ()
    distilled: Distilled | None = None  # the family's timestep-distilled model, if it has one
    # A transformer denoiser's top-level module names (with the trailing "."): in the model's
    # original code (BFL's ``double_blocks.`` for Flux: kohya ``lora_unet_…``, ComfyUI
    # ``diffusion_model.…`` and bare files use them) and in diffusers (``transformer_blocks.``).
    # app.core.adapter_keys tells a file's transformer layers by them.
    original_roots: tuple[str, ...] = ()
    diffusers_roots: tuple[str, ...] = ()
    # Regexes on adapter tensor names (any layout) that only this family's files match: the
    # evidence when a file has no metadata. Checked newest family first (app.core.adapters).
    adapter_markers: tuple[str, ...] = ()

    def render_defaults(self, distilled: bool = False) -> tuple[int, float]:
        """Steps and guidance a render starts from: the distilled model's when it is that one."""
        if distilled and self.distilled is not None:
            return self.distilled.steps, self.distilled.guidance
        return self.default_steps, self.default_guidance

    def scheduler_problem(self, scheduler: str) -> str | None:
        """The sentence refusing a sampler this family cannot use; None when it can."""
        if scheduler in self.schedulers:
            return None
        how = "samples by flow matching" if self.flow_matching else "cannot use it"
        return f"{self.label} {how}: the {scheduler} sampler does not apply; pick {_or_list(self.schedulers)}"

    def architecture_for(self, v_prediction: bool) -> str:
        return self.architecture_v_prediction if v_prediction and self.architecture_v_prediction else self.architecture


def _or_list(items: tuple[str, ...]) -> str:
    return ", ".join(items[:-1]) + f" or {items[-1]}" if len(items) > 1 else items[0]


_KOHYA_TE, _KOHYA_TE1, _KOHYA_TE2 = "lora_te", "lora_te1", "lora_te2"
_SD_SCHEDULERS = ("Euler", "Euler a", "DPM++ 2M Karras", "DDIM", "UniPC")

# The LoRA Block Weight extension's full block lists (BLOCKID26 and BLOCKID20 of its
# scripts/lora_block_weight.py; "MID" is its M00): BASE is the text encoder(s), INnn / OUTnn the
# UNet's input / output blocks in the original Stability numbering, MID its middle block.
_UNET_BLOCKS_SD = ("BASE", *(f"IN{i:02}" for i in range(12)), "MID", *(f"OUT{i:02}" for i in range(12)))
_UNET_BLOCKS_SDXL = ("BASE", *(f"IN{i:02}" for i in range(9)), "MID", *(f"OUT{i:02}" for i in range(9)))
# Its BLOCKIDFLUX: the text encoders, the input embedders, 19 double and 38 single blocks, the final layer.
_DIT_BLOCKS_FLUX = ("CLIP", "T5", "IN", *(f"D{i:02}" for i in range(19)), *(f"S{i:02}" for i in range(38)), "OUT")

_ZIMAGE_ROOTS = ("layers.", "noise_refiner.", "context_refiner.", "t_embedder.", "cap_embedder.")

FAMILIES: tuple[FamilySpec, ...] = (
    FamilySpec(
        id=Family.SD1,
        label="SD 1.x",
        base_version="sd_v1",
        base_versions_read=("sd_v1",),
        ss_v2=False,
        architecture="stable-diffusion-v1/lora",
        architecture_v_prediction=None,
        architecture_prefix="stable-diffusion-v1",
        implementation="diffusers",
        text_widths=(768,),
        te_prefixes=(_KOHYA_TE,),
        cross_width=768,
        size_conditioning=False,
        stacked_transformers=False,
        transformer_denoiser=False,
        pipeline_classes=("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
        variants=("sd15",),
        default_steps=20,
        default_size=(512, 512),
        default_guidance=7.0,
        default_scheduler="Euler",
        schedulers=_SD_SCHEDULERS,
        flow_matching=False,
        guidance_distilled=False,
        size_presets=((512, 512), (512, 768), (768, 512)),
        color="#1e88e5",
        hub_bases=(
            "runwayml/stable-diffusion-v1-5",
            "stable-diffusion-v1-5/stable-diffusion-v1-5",
            "CompVis/stable-diffusion-v1-4",
            "CompVis/stable-diffusion-v1-5",
        ),
        hub_name_pattern=r"(stable-diffusion-v?1|sd-?1|v1-5)",
        blocks=_UNET_BLOCKS_SD,
        text_blocks=("BASE",),
        block_layout=BlockLayout.SD_UNET,
    ),
    FamilySpec(
        id=Family.SD2,
        label="SD 2.x",
        base_version="sd_v2",
        base_versions_read=("sd_v2",),
        ss_v2=True,
        architecture="stable-diffusion-v2-512/lora",
        architecture_v_prediction="stable-diffusion-v2-768-v/lora",
        architecture_prefix="stable-diffusion-v2",
        implementation="diffusers",
        text_widths=(1024,),
        te_prefixes=(_KOHYA_TE,),
        cross_width=1024,
        size_conditioning=False,
        stacked_transformers=False,
        transformer_denoiser=False,
        pipeline_classes=("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline"),
        variants=("sd21", "sd21-base"),
        default_steps=20,
        default_size=(512, 512),
        default_guidance=7.0,
        default_scheduler="Euler",
        schedulers=_SD_SCHEDULERS,
        flow_matching=False,
        guidance_distilled=False,
        size_presets=((768, 768), (512, 512)),
        color="#00897b",
        hub_bases=(
            "stabilityai/stable-diffusion-2-1",
            "stabilityai/stable-diffusion-2-1-base",
            "stabilityai/stable-diffusion-2",
            "stabilityai/stable-diffusion-2-base",
        ),
        hub_name_pattern=r"(stable-diffusion-2|sd-?2)",
        blocks=_UNET_BLOCKS_SD,
        text_blocks=("BASE",),
        block_layout=BlockLayout.SD_UNET,
    ),
    FamilySpec(
        id=Family.SDXL,
        label="SDXL",
        base_version="sdxl_base_v1-0",
        base_versions_read=("sdxl_base_v1-0",),
        ss_v2=False,
        architecture="stable-diffusion-xl-v1-base/lora",
        architecture_v_prediction=None,
        architecture_prefix="stable-diffusion-xl",
        implementation="https://github.com/Stability-AI/generative-models",
        text_widths=(768, 1280),
        te_prefixes=(_KOHYA_TE1, _KOHYA_TE2),
        cross_width=2048,
        size_conditioning=True,
        stacked_transformers=True,
        transformer_denoiser=False,
        pipeline_classes=("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline"),
        variants=("sdxl",),
        default_steps=20,
        default_size=(1024, 1024),
        default_guidance=7.0,
        default_scheduler="Euler",
        schedulers=_SD_SCHEDULERS,
        flow_matching=False,
        guidance_distilled=False,
        size_presets=((1024, 1024), (832, 1216), (1216, 832), (896, 1152), (1152, 896), (768, 1344)),
        color="#8e24aa",
        hub_bases=("stabilityai/stable-diffusion-xl-base-1.0", "stabilityai/stable-diffusion-xl-refiner-1.0"),
        # A name word "xl", or sdxl / xl- / -xl, or the SDXL fine-tune lines Pony and Illustrious.
        hub_name_pattern=r"(^|[^a-z0-9])xl([^a-z0-9]|$)|(sdxl|xl[-_]|[-_]xl|pony|illustrious)",
        blocks=_UNET_BLOCKS_SDXL,
        text_blocks=("BASE", "BASE"),
        block_layout=BlockLayout.SD_UNET,
        hub_tags=("stable-diffusion-xl",),
    ),
    FamilySpec(
        id=Family.FLUX1,
        label="Flux.1",
        # sd-scripts' Flux LoRAs (what ComfyUI and Forge load) say "flux1" and "flux-1-dev/lora".
        base_version="flux1",
        base_versions_read=("flux1", "flux", "flux.1"),
        ss_v2=False,
        architecture="flux-1-dev/lora",
        architecture_v_prediction=None,
        architecture_prefix="flux-1",
        implementation="https://github.com/black-forest-labs/flux",
        # CLIP ViT-L (pooled) and T5-XXL; kohya names them lora_te1_ and lora_te3_.
        text_widths=(768, 4096),
        te_prefixes=(_KOHYA_TE1, "lora_te3"),
        cross_width=4096,  # joint attention reads the T5 features
        size_conditioning=False,
        stacked_transformers=False,
        transformer_denoiser=True,
        pipeline_classes=("FluxPipeline", "FluxImg2ImgPipeline"),
        variants=("flux1-dev", "flux1-schnell"),
        default_steps=28,  # [dev]; [schnell] is distilled to 4 steps without guidance
        default_size=(1024, 1024),
        default_guidance=3.5,  # the distilled guidance [dev] was trained with, not CFG
        default_scheduler="Euler",  # flow-matching Euler
        # Flow-matching Euler, its stochastic form and UniPC in flow mode; Karras sigmas on a flow
        # turn NaN and DDIM has no flow form (checked on the tiny Flux).
        schedulers=("Euler", "Euler a", "UniPC"),
        flow_matching=True,
        guidance_distilled=True,
        size_presets=((1024, 1024), (832, 1216), (1216, 832), (896, 1152), (1152, 896), (768, 1344), (1344, 768)),
        color="#f4511e",
        hub_bases=("black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-schnell"),
        hub_name_pattern=r"flux",
        blocks=_DIT_BLOCKS_FLUX,
        text_blocks=("CLIP", "T5"),
        block_layout=BlockLayout.FLUX_DIT,
        hub_tags=("flux",),
        original_roots=(
            "double_blocks.",
            "single_blocks.",
            "final_layer.",
            "img_in.",
            "txt_in.",
            "time_in.",
            "vector_in.",
            "guidance_in.",
        ),  # fmt: skip
        diffusers_roots=(
            "transformer_blocks.",
            "single_transformer_blocks.",
            "x_embedder.",
            "context_embedder.",
            "norm_out.",
        ),  # fmt: skip
        adapter_markers=(r"(^|[._])(double_blocks|single_blocks|single_transformer_blocks)[._]",),
        # FLUX.1 [schnell]: 4 steps, no guidance embedding (its transformer config says
        # guidance_embeds = false), T5 prompts of 256 tokens.
        distilled=Distilled(
            label="Flux.1 [schnell]", steps=4, guidance=0.0, hub_base="black-forest-labs/FLUX.1-schnell"
        ),
    ),
    FamilySpec(
        id=Family.ZIMAGE,
        label="Z-Image",
        # musubi-tuner (utils/sai_model_spec.py) writes modelspec.architecture "Z-Image/lora" and this
        # implementation URL; its architecture id "z_image" (short "zi") is our ss_base_model_version.
        base_version="z_image",
        base_versions_read=("z_image", "zimage", "zi", "z-image", "z_image_turbo", "zimage_turbo"),
        ss_v2=False,
        architecture="Z-Image/lora",
        architecture_v_prediction=None,
        architecture_prefix="Z-Image",
        implementation="https://github.com/Tongyi-MAI/Z-Image",
        text_widths=(2560,),  # Qwen3-4B (its second-to-last hidden state); frozen
        te_prefixes=(_KOHYA_TE,),
        cross_width=2560,  # cap_embedder reads the Qwen3 features
        size_conditioning=False,
        stacked_transformers=False,
        transformer_denoiser=True,
        pipeline_classes=("ZImagePipeline", "ZImageImg2ImgPipeline"),
        variants=("zimage-turbo", "zimage"),
        # Z-Image (the base): 50 steps, real CFG 4 with a negative prompt (its model card); Turbo below.
        default_steps=50,
        default_size=(1024, 1024),
        default_guidance=4.0,
        default_scheduler="Euler",
        schedulers=("Euler", "Euler a", "UniPC"),
        flow_matching=True,
        guidance_distilled=False,  # classifier-free guidance and a negative prompt
        size_presets=((1024, 1024), (1152, 896), (896, 1152), (1248, 832), (832, 1248), (1280, 720), (720, 1280)),
        color="#6d4c41",
        hub_bases=("Tongyi-MAI/Z-Image-Turbo", "Tongyi-MAI/Z-Image"),
        hub_name_pattern=r"z[-_ ]?image",
        blocks=(),
        text_blocks=(),
        block_layout=BlockLayout.NONE,
        hub_tags=("z-image", "z-image-turbo"),
        # The original code's (and ComfyUI's) top-level modules, then ZImageTransformer2DModel's.
        original_roots=(*_ZIMAGE_ROOTS, "x_embedder.", "final_layer."),
        diffusers_roots=(*_ZIMAGE_ROOTS, "all_x_embedder.", "all_final_layer."),
        # The refiners are Z-Image's own; its main blocks are layers.N.attention / feed_forward (text
        # encoders' are self_attn / mlp), with any layout's separator.
        adapter_markers=(
            r"(^|[._])(noise|context)_refiner[._]\d",
            r"(^|[._])layers[._]\d+[._](attention[._](to_[qkv]|to_out|qkv|out)|feed_forward[._]w[123])([._]|$)",
        ),
        # Z-Image-Turbo: 8 steps (8 transformer calls since diffusers 0.37), guidance 0 (no CFG).
        distilled=Distilled(label="Z-Image-Turbo", steps=8, guidance=0.0, hub_base="Tongyi-MAI/Z-Image-Turbo"),
    ),
)

_BY_ID = {f.id: f for f in FAMILIES}
# Assumed when nothing tells: a ``.ckpt`` cannot be inspected without unpickling (diffusers
# detects it itself), and an SD pipeline with other widths (tiny test models) is SD 1.x-shaped.
FALLBACK = Family.SD1


# ---------------------------------------------------------------- lookups (None: no family says so)


def spec(family: Family | str) -> FamilySpec:
    """The entry of a family (``Family`` or its value); ValueError for an unknown value."""
    return _BY_ID[Family(family)]


def label(family: Family | str | None) -> str:
    """ "SD 1.x" for a known family; an unknown value as it is."""
    if family is None:
        return ""
    try:
        return spec(family).label
    except ValueError:
        return str(family)


def supported_labels() -> str:
    """ "SD 1.x, SD 2.x and SDXL": the families, for messages."""
    labels = [f.label for f in FAMILIES]
    return ", ".join(labels[:-1]) + f" and {labels[-1]}" if len(labels) > 1 else labels[0]


def _first(matches) -> Family | None:
    return next((f.id for f in FAMILIES if matches(f)), None)


def by_base_version(value: str | None) -> Family | None:
    """kohya ``ss_base_model_version`` -> family."""
    return _first(lambda f: value in f.base_versions_read)


def by_architecture(arch: str) -> Family | None:
    """modelspec ``architecture`` (e.g. ``stable-diffusion-v2-768-v/lora``) -> family."""
    return _first(lambda f: arch.startswith(f.architecture_prefix)) if arch else None


def by_cross_width(width: int, among: tuple[Family, ...] | None = None) -> Family | None:
    """The family whose cross-attention reads ``width``-wide text features."""
    return _first(lambda f: f.cross_width == width and (among is None or f.id in among))


def by_text_width(width: int, among: tuple[Family, ...] | None = None) -> Family | None:
    """The single-text-encoder family whose encoder is ``width`` wide. Two-encoder families
    are left out: SDXL's first encoder is as wide as SD 1.x's, so the width tells nothing."""
    return _first(lambda f: len(f.text_widths) == 1 and f.text_widths[0] == width and (among is None or f.id in among))


def by_pipeline_class(name: str) -> tuple[Family, ...]:
    """Families a diffusers pipeline class serves (several: SD 1.x and 2.x share one)."""
    return tuple(f.id for f in FAMILIES if name in f.pipeline_classes)


def by_variant(variant: str) -> Family:
    """Family of a bundled config variant (``sd21-base`` -> sd2)."""
    found = _first(lambda f: variant in f.variants)
    if found is None:
        raise ValueError(f"unknown model variant {variant!r}")
    return found


def all_variants() -> tuple[str, ...]:
    return tuple(v for f in FAMILIES for v in f.variants)


def with_second_text_encoder() -> Family | None:
    return _first(lambda f: len(f.te_prefixes) > 1)


def with_size_conditioning() -> Family | None:
    return _first(lambda f: f.size_conditioning)


def with_ss_v2() -> Family | None:
    return _first(lambda f: f.ss_v2)


def with_stacked_transformers() -> Family | None:
    return _first(lambda f: f.stacked_transformers)


def with_transformer_denoiser() -> Family | None:
    return _first(lambda f: f.transformer_denoiser)


def by_adapter_names(names: list[str]) -> tuple[Family, str] | None:
    """The family whose ``adapter_markers`` one of ``names`` matches, newest family first, with
    that name; None when no marker matches."""
    for f in reversed(FAMILIES):
        for marker in f.adapter_markers:
            pattern = re.compile(marker)
            if (hit := next((n for n in names if pattern.search(n)), None)) is not None:
                return f.id, hit
    return None


def denoiser_roots(which: str) -> tuple[str, ...]:
    """Every family's ``original_roots`` or ``diffusers_roots`` (``which``), without repeats."""
    return tuple(dict.fromkeys(r for f in FAMILIES for r in getattr(f, f"{which}_roots")))


_BY_HUB_BASE = {base.lower(): f.id for f in FAMILIES for base in f.hub_bases}


def by_hub_base(base_id: str) -> Family | None:
    """A Hub base-model id (any case) -> family."""
    return _BY_HUB_BASE.get(base_id.lower())


def guess_from_name(name: str) -> Family | None:
    """A fine-tune's family guessed from its repo name. Newest families first: their names
    often carry an older family's marker too (``…-xl-v1-5``)."""
    low = name.lower()
    return next((f.id for f in reversed(FAMILIES) if re.search(f.hub_name_pattern, low)), None)


def by_hub_tags(tags: list[str]) -> Family | None:
    return _first(lambda f: any(t in f.hub_tags for t in tags))
