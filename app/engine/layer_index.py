"""Every patchable layer of a loaded pipeline, findable by each naming scheme adapter files use.

Kohya (``lora_unet_…``, ``lora_te…``, with diffusers or original Stability (SGM) UNet names),
diffusers, peft, ComfyUI and SimpleTuner's LyCORIS names all resolve to one :class:`Target`;
a transformer denoiser's layers also by OneTrainer's ``lora_transformer_…``. A family's own
names (Flux's kohya/BFL/XLabs, with fused q/k/v) come from its engine's ``adapter_names``:
a fused file layer resolves to several targets, each a row range of its ΔW (:meth:`LayerIndex.pieces`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from torch import nn

from app.core import families
from app.core.adapters import Part
from app.engine.families import engine
from app.engine.layer_delta import Rows
from app.engine.lora_files import te_module_path


@dataclass(frozen=True, order=True)
class Target:
    """One patchable layer: which part of the pipeline and the module path inside it."""

    part: Part
    path: str

    def __str__(self) -> str:
        return f"{self.part.value}.{self.path}"


_RESNET_SGM = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "time_emb_proj": "emb_layers.1",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "conv_shortcut": "skip_connection",
}
_KOHYA_TE = {Part.TEXT_ENCODER: ("lora_te_", "lora_te1_"), Part.TEXT_ENCODER_2: ("lora_te2_",)}
_COMFY_TE = {
    Part.TEXT_ENCODER: "text_encoders.clip_l.transformer.",
    Part.TEXT_ENCODER_2: "text_encoders.clip_g.transformer.",
}
_DIFFUSERS_PREFIX = {
    Part.UNET: "unet.",
    Part.TRANSFORMER: "transformer.",
    Part.TEXT_ENCODER: "text_encoder.",
    Part.TEXT_ENCODER_2: "text_encoder_2.",
}


def pipeline_parts(pipe: Any) -> dict[Part, nn.Module]:
    parts = {
        Part.UNET: getattr(pipe, "unet", None),
        Part.TRANSFORMER: getattr(pipe, "transformer", None),
        Part.TEXT_ENCODER: getattr(pipe, "text_encoder", None),
        Part.TEXT_ENCODER_2: getattr(pipe, "text_encoder_2", None),
    }
    return {p: m for p, m in parts.items() if m is not None}


def sgm_prefixes(unet: nn.Module) -> dict[str, str]:
    """Diffusers module prefixes of a UNet -> the original Stability (SGM) names, from its structure."""
    out = {
        "conv_in": "input_blocks.0.0",
        "time_embedding.linear_1": "time_embed.0",
        "time_embedding.linear_2": "time_embed.2",
        "add_embedding.linear_1": "label_emb.0.0",
        "add_embedding.linear_2": "label_emb.0.2",
        "conv_norm_out": "out.0",
        "conv_out": "out.2",
    }
    index = 1
    for i, block in enumerate(unet.down_blocks):
        attentions = getattr(block, "attentions", None)
        for j in range(len(block.resnets)):
            out[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{index}.0"
            if attentions:
                out[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{index}.1"
            index += 1
        if getattr(block, "downsamplers", None):
            out[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{index}.0.op"
            index += 1
    mid = getattr(unet, "mid_block", None)
    if mid is not None:
        out["mid_block.resnets.0"] = "middle_block.0"
        if getattr(mid, "attentions", None):
            out["mid_block.attentions.0"] = "middle_block.1"
            out["mid_block.resnets.1"] = "middle_block.2"
        elif len(mid.resnets) > 1:
            out["mid_block.resnets.1"] = "middle_block.1"
    index = 0
    for i, block in enumerate(unet.up_blocks):
        attentions = getattr(block, "attentions", None)
        n = len(block.resnets)
        for j in range(n):
            out[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{index}.0"
            if attentions:
                out[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{index}.1"
            if j == n - 1 and getattr(block, "upsamplers", None):
                out[f"up_blocks.{i}.upsamplers.0.conv"] = f"output_blocks.{index}.{2 if attentions else 1}.conv"
            index += 1
    return out


def _to_sgm(path: str, prefixes: dict[str, str]) -> str | None:
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in prefixes:
            rest = parts[cut:]
            if ".resnets." in f".{prefix}." and rest and rest[0] in _RESNET_SGM:
                rest = _RESNET_SGM[rest[0]].split(".") + rest[1:]
            return ".".join([prefixes[prefix]] + rest)
    return None


class LayerIndex:
    """Every Linear/Conv layer of a pipeline, findable by each naming scheme adapter files use."""

    def __init__(self, pipe: Any) -> None:
        self.parts = pipeline_parts(pipe)
        self.modules: dict[Target, nn.Module] = {}
        self.names: dict[str, Target] = {}
        self._sgm: dict[Target, str] = {}
        # File layers that stand for several model layers (fused q/k/v): key -> (target, rows).
        self.fused: dict[str, tuple[tuple[Target, Rows], ...]] = {}
        for part, root in self.parts.items():
            sgm = sgm_prefixes(root) if part is Part.UNET else {}
            for path, module in root.named_modules():
                if not isinstance(module, (nn.Linear, nn.Conv2d)):
                    continue
                target = Target(part, path)
                self.modules[target] = module
                flat = path.replace(".", "_")
                self.names[_DIFFUSERS_PREFIX[part] + path] = target
                if part is Part.UNET:
                    self.names["lora_unet_" + flat] = target
                    self.names.setdefault("lycoris_" + flat, target)  # SimpleTuner's LyCORIS files
                    self.names.setdefault("base_model.model." + path, target)
                    self.names.setdefault(path, target)  # the UNet's own state-dict names
                    sgm_path = _to_sgm(path, sgm)
                    if sgm_path:
                        self._sgm[target] = sgm_path
                        self.names.setdefault("lora_unet_" + sgm_path.replace(".", "_"), target)
                        self.names.setdefault("diffusion_model." + sgm_path, target)  # ComfyUI's own
                elif part.denoiser:
                    self.names.setdefault("base_model.model." + path, target)  # peft
                    self.names.setdefault(path, target)  # the transformer's own state-dict names
                    self.names.setdefault("lora_transformer_" + flat, target)  # OneTrainer
                    self.names.setdefault("lycoris_" + flat, target)  # SimpleTuner's LyCORIS files
                else:
                    # transformers 5's CLIPTextModel drops "text_model." from its paths; files keep it.
                    full = te_module_path(path)
                    self.names.setdefault(_DIFFUSERS_PREFIX[part] + full, target)
                    self.names.setdefault(_COMFY_TE[part] + full, target)
                    for prefix in _KOHYA_TE[part]:
                        self.names.setdefault(prefix + full.replace(".", "_"), target)
                        self.names.setdefault(prefix + flat, target)
                    self.names.setdefault("base_model.model." + path, target)
                    self.names.setdefault("base_model.model." + full, target)
        self._add_family_names(pipe)

    def _add_family_names(self, pipe: Any) -> None:
        """The names a family's engine knows beyond the generic schemes (Flux's kohya/BFL/XLabs)."""
        found = families.by_pipeline_class(type(pipe).__name__)
        if not found:
            return
        family_engine = engine(found[0])
        for part, root in self.parts.items():
            for key, pieces in family_engine.adapter_names(part, root).items():
                targets = tuple((Target(part, piece.path), piece.rows) for piece in pieces)
                if not all(t in self.modules for t, _ in targets):
                    continue
                (target, rows), whole = targets[0], ((0, self.shape(targets[0][0])[0]),)
                if len(targets) == 1 and rows == whole:
                    self.names.setdefault(key, target)
                else:
                    self.fused.setdefault(key, targets)

    def resolve(self, module_key: str) -> Target | None:
        return self.names.get(_normalise_module_key(module_key))

    def pieces(self, module_key: str) -> tuple[tuple[Target, Rows | None], ...] | None:
        """The layers a file's module key changes: one (rows None: all of its ΔW), or several
        row ranges of one ΔW for a fused layer; None when the model has no such layer."""
        target = self.resolve(module_key)
        if target is not None:
            return ((target, None),)
        return self.fused.get(module_key)

    def key_shape(self, module_key: str) -> tuple[int, ...]:
        """The weight shape a file layer must have: its target's, or the fused layers' stacked."""
        pieces = self.pieces(module_key)
        if pieces is None:
            raise KeyError(module_key)
        first = self.shape(pieces[0][0])
        if pieces[0][1] is None:
            return first
        return (sum(b - a for _, rows in pieces for a, b in rows or ()),) + first[1:]

    def sgm_path(self, target: Target) -> str | None:
        """The original Stability (SGM/LDM) name of a UNet layer, as ComfyUI files use it."""
        return self._sgm.get(target)

    def shape(self, target: Target) -> tuple[int, ...]:
        return tuple(self.modules[target].weight.shape)


_PROCESSOR = re.compile(r"^(.*)\.processor\.(to_q|to_k|to_v|to_out)_lora$")


def _normalise_module_key(key: str) -> str:
    """Old diffusers attention-processor names -> module paths."""
    m = _PROCESSOR.match(key)
    if m:
        name = m.group(2)
        return f"{m.group(1)}.{'to_out.0' if name == 'to_out' else name}"
    return key
