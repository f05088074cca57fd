"""The types of the base-model family table (``app.core.families``): the ``Family`` ids, the
``FamilySpec`` entry, its distilled-model and block-layout parts. Pure Python, no torch."""

from __future__ import annotations

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
    CHROMA = "chroma"
    QWENIMAGE = "qwenimage"
    SD3 = "sd3"
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
    # The family whose adapter files this one's cannot be told from without metadata or markers
    # (Chroma's LoRAs use Flux.1's layer names): such a file is read as that family, the evidence
    # says so, and it is not refused on a base model of this family.
    looks_like: Family | None = None
    # A tensor name (BFL's, without ``model.diffusion_model.``) only this family's single-file
    # checkpoints have, where they otherwise look like Flux.1's: app.engine.single_file tells them by it.
    checkpoint_marker: str = ""

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
