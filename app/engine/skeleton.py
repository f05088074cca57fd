"""Full-size models with random weights (``loraloom skeleton``): real shapes, no download.

The architecture is known from the bundled configs, so random weights of the true shapes
measure memory, time and key coverage exactly as trained weights would. Models are built
on the ``meta`` device (shapes only, no memory) and each tensor is drawn and written one at
a time into a hand-streamed safetensors file, so the process never holds the model at all.

Written as a diffusers folder or as one checkpoint in the original LDM/SGM layout that
A1111 and ComfyUI read (``ldm_names`` maps the names the way diffusers' loader reads back).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import tempfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from app.core.families import FAMILIES
from app.engine.single_file import Variant, component_config, components, config_folder

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
_BLOCK = 65_521  # a prime, so the repeat does not line up with rows
_ST_DTYPE = {torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32"}


# Families whose original single-file layout has no writer here yet (Flux.1's is the
# transformer-only file in BFL names, as ComfyUI and Forge keep it: ``write_bfl_transformer``).
_BFL_FILE = ("flux1",)
_NO_SINGLE_FILE = tuple(f.id.value for f in FAMILIES if f.transformer_denoiser and f.id.value not in _BFL_FILE)


class SkeletonError(Exception):
    """The skeleton could not be written; the message names the target and says why."""


# ---------------------------------------------------------------- shapes (meta device)


def meta_component(variant: Variant | str, component: str):
    """One component built on the meta device from the bundled config: names and shapes only.
    A diffusers config names its class (``_class_name``), a transformers one its architecture
    (CLIP text configs without one are CLIPTextModel)."""
    from accelerate import init_empty_weights

    cfg = component_config(variant, component)
    with init_empty_weights():
        if "_class_name" in cfg:
            import diffusers

            return getattr(diffusers, cfg["_class_name"]).from_config(cfg)
        import transformers

        arch = (cfg.get("architectures") or ["CLIPTextModel"])[0]
        fields = {k: v for k, v in cfg.items() if k not in ("architectures", "model_type")}
        return getattr(transformers, arch)(transformers.AutoConfig.for_model(cfg["model_type"], **fields))


def component_shapes(variant: Variant | str, component: str) -> dict[str, tuple[int, ...]]:
    """Diffusers state-dict names -> shapes of one component (floating-point tensors only)."""
    model = meta_component(variant, component)
    return {k: tuple(t.shape) for k, t in model.state_dict().items() if t.is_floating_point()}


def random_tensor(name: str, shape: tuple[int, ...], dtype: torch.dtype, seed: int) -> torch.Tensor:
    """The skeleton's value for ``name``: norm weights 1, biases 0, else N(0, 1/fan_in).

    Seeded by the diffusers name, so a folder and a single file of one seed hold the same
    numbers (and tests can recompute any tensor). The scale keeps activations finite in fp16.
    """
    if len(shape) == 1 and name.endswith("weight"):
        return torch.ones(shape, dtype=dtype)
    if len(shape) == 1 and name.endswith("bias"):
        return torch.zeros(shape, dtype=dtype)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    fan_in = max(1, int(torch.Size(shape[1:]).numel())) if len(shape) > 1 else shape[-1]
    numel = int(torch.Size(shape).numel())
    # Drawing billions of normals costs minutes on a small CPU; a block of a prime length
    # repeated over the tensor is as good for shapes, memory and time (rows never repeat).
    block = torch.randn(min(numel, _BLOCK), generator=gen, dtype=torch.float32).mul_(fan_in**-0.5).to(dtype)
    return block.repeat(-(-numel // block.numel()))[:numel].reshape(shape)


# ---------------------------------------------------------------- LDM/SGM names


def _unet_prefixes(names: Iterable[str], levels: int) -> list[tuple[str, str]]:
    """(diffusers prefix, LDM prefix) pairs for a UNet with ``levels`` resolution levels."""
    names = list(names)
    pairs = []
    for i in range(levels):
        for j in range(2):
            pairs.append((f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{3 * i + j + 1}.0."))
            pairs.append((f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{3 * i + j + 1}.1."))
        pairs.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{3 * (i + 1)}.0.op."))
        has_attn = any(n.startswith(f"up_blocks.{i}.attentions.") for n in names)
        for j in range(3):
            pairs.append((f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{3 * i + j}.0."))
            pairs.append((f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{3 * i + j}.1."))
        pairs.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{3 * i + 2}.{2 if has_attn else 1}."))
    pairs.append(("mid_block.attentions.0.", "middle_block.1."))
    pairs += [(f"mid_block.resnets.{j}.", f"middle_block.{2 * j}.") for j in range(2)]
    return pairs


_RESNET = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
]
_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}


def _unet_ldm(names: list[str], levels: int) -> dict[str, str]:
    out = {}
    pairs = _unet_prefixes(names, levels)
    for name in names:
        module, _, leaf = name.rpartition(".")
        if module in _UNET_FIXED:
            out[name] = f"{_UNET_FIXED[module]}.{leaf}"
            continue
        for hf, ldm in pairs:
            if name.startswith(hf):
                rest = name[len(hf) :]
                if ".resnets." in hf:
                    for a, b in _RESNET:
                        rest = rest.replace(a, b, 1) if rest.startswith(a) else rest
                out[name] = ldm + rest
                break
        else:
            raise KeyError(f"no LDM name for UNet tensor {name}")
    return out


def _vae_ldm(name: str) -> str:
    n = name.replace("conv_norm_out", "norm_out").replace("conv_shortcut", "nin_shortcut")
    n = n.replace("mid_block.attentions.0.", "mid.attn_1.")
    for i in range(2):
        n = n.replace(f"mid_block.resnets.{i}.", f"mid.block_{i + 1}.")
    for i in range(4):
        n = n.replace(f"encoder.down_blocks.{i}.resnets.", f"encoder.down.{i}.block.")
        n = n.replace(f"down_blocks.{i}.downsamplers.0.", f"down.{i}.downsample.")
        n = n.replace(f"decoder.up_blocks.{i}.resnets.", f"decoder.up.{3 - i}.block.")
        n = n.replace(f"up_blocks.{i}.upsamplers.0.", f"up.{3 - i}.upsample.")
    if ".attn_1." in n:
        for a, b in (
            ("group_norm.", "norm."),
            ("to_q.", "q."),
            ("to_k.", "k."),
            ("to_v.", "v."),
            ("to_out.0.", "proj_out."),
        ):
            n = n.replace(a, b)
    return n


def _open_clip_ldm(name: str) -> str:
    fixed = {
        "text_model.embeddings.position_embedding.weight": "positional_embedding",
        "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
        "text_model.final_layer_norm.weight": "ln_final.weight",
        "text_model.final_layer_norm.bias": "ln_final.bias",
        "text_projection.weight": "text_projection",
    }
    if name in fixed:
        return fixed[name]
    n = name.replace("text_model.encoder.layers.", "transformer.resblocks.")
    for a, b in (
        ("layer_norm1", "ln_1"),
        ("layer_norm2", "ln_2"),
        (".mlp.fc1.", ".mlp.c_fc."),
        (".mlp.fc2.", ".mlp.c_proj."),
        (".self_attn.out_proj.", ".attn.out_proj."),
    ):
        n = n.replace(a, b)
    return n


_TE_PREFIX = {
    (Variant.SD15, "text_encoder"): ("cond_stage_model.transformer.", False),
    (Variant.SD21, "text_encoder"): ("cond_stage_model.model.", True),
    (Variant.SD21_BASE, "text_encoder"): ("cond_stage_model.model.", True),
    (Variant.SDXL, "text_encoder"): ("conditioner.embedders.0.transformer.", False),
    (Variant.SDXL, "text_encoder_2"): ("conditioner.embedders.1.model.", True),
}


def ldm_tensors(
    variant: Variant, component: str, shapes: dict[str, tuple[int, ...]]
) -> Iterator[tuple[str, tuple[int, ...], list[str]]]:
    """(LDM name, LDM shape, diffusers names it is made of, in order) for one component.

    Differences in shape: the VAE's attention projections are 1x1 convolutions in LDM, and
    OpenCLIP stores q/k/v as one ``in_proj`` (concatenated) and ``text_projection`` transposed.
    """
    names = list(shapes)
    if component == "unet":
        levels = len(component_config(variant, "unet")["block_out_channels"])
        for hf, ldm in _unet_ldm(names, levels).items():
            yield "model.diffusion_model." + ldm, shapes[hf], [hf]
        return
    if component == "vae":
        for hf in names:
            ldm = _vae_ldm(hf)
            shape = shapes[hf]
            if ".attn_1." in ldm and len(shape) == 2:
                shape = shape + (1, 1)
            yield "first_stage_model." + ldm, shape, [hf]
        return
    prefix, open_clip = _TE_PREFIX[(variant, component)]
    for hf in names:
        # transformers >= 5.6 dropped CLIPTextModel's ``text_model.`` level; checkpoints keep it.
        full = hf if hf.startswith(("text_model.", "text_projection")) else "text_model." + hf
        if not open_clip:
            yield prefix + full, shapes[hf], [hf]
        elif ".self_attn.k_proj." in hf or ".self_attn.v_proj." in hf:
            continue
        elif ".self_attn.q_proj." in hf:
            parts = [hf.replace("q_proj", p) for p in ("q_proj", "k_proj", "v_proj")]
            leaf = "in_proj_weight" if hf.endswith("weight") else "in_proj_bias"
            ldm = _open_clip_ldm(full.rsplit(".self_attn.", 1)[0]) + ".attn." + leaf
            yield prefix + ldm, (3 * shapes[hf][0],) + shapes[hf][1:], parts
        elif hf == "text_projection.weight":
            yield prefix + "text_projection", shapes[hf][::-1], [hf]
        else:
            yield prefix + _open_clip_ldm(full), shapes[hf], [hf]


def ldm_value(ldm_name: str, shape: tuple[int, ...], parts: list[str], shapes, dtype, seed) -> torch.Tensor:
    tensors = [random_tensor(p, shapes[p], dtype, seed) for p in parts]
    if len(tensors) > 1:
        return torch.cat(tensors, 0)
    t = tensors[0]
    if ldm_name.endswith("text_projection"):
        return t.T.contiguous()
    return t.reshape(shape)


# ---------------------------------------------------------------- streaming safetensors


def write_safetensors_streamed(
    path: Path, entries: list[tuple[str, tuple[int, ...], torch.dtype]], make, metadata: dict[str, str] | None = None
) -> int:
    """Write a safetensors file tensor by tensor: ``make(i)`` returns entry ``i``'s tensor.

    The header is computed from shapes alone, then each tensor is made, written and
    dropped, so memory never holds more than one tensor. Written to a temp name beside
    ``path`` and renamed when complete. Returns the bytes of tensor data.
    """
    header: dict[str, dict] = {"__metadata__": dict(metadata or {})}
    offset = 0
    for name, shape, dtype in entries:
        size = int(torch.Size(shape).numel()) * torch.empty((), dtype=dtype).element_size()
        header[name] = {"dtype": _ST_DTYPE[dtype], "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # tensor data starts 8-byte aligned
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(struct.pack("<Q", len(blob)) + blob)
            for i, (name, shape, dtype) in enumerate(entries):
                t = make(i)
                if tuple(t.shape) != tuple(shape) or t.dtype != dtype:
                    raise AssertionError(f"{name}: made {tuple(t.shape)} {t.dtype}, header says {shape} {dtype}")
                fh.write(t.contiguous().view(torch.uint8).numpy().tobytes())
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the result is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return offset


# ---------------------------------------------------------------- whole models


def _weights_name(component: str) -> str:
    return "model.safetensors" if component.startswith("text_encoder") else "diffusion_pytorch_model.safetensors"


def parameter_bytes(variant: Variant | str, dtype: torch.dtype = torch.float16) -> int:
    """Bytes of all weights of ``variant`` in ``dtype`` (what loading it must cost, at least)."""
    size = torch.empty((), dtype=dtype).element_size()
    return sum(
        int(torch.Size(s).numel()) * size for c in components(variant) for s in component_shapes(variant, c).values()
    )


def write_skeleton(
    out: Path | str,
    variant: Variant | str,
    *,
    single_file: bool = False,
    dtype: str = "fp16",
    seed: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write a full-size random-weight model; return the folder or the ``.safetensors`` file.

    ``out`` is the folder for a diffusers model, or the folder that receives
    ``<variant>.safetensors`` with ``single_file``. Raises :class:`SkeletonError`.
    """
    from app.engine.tiny import _check_target, _move_into_place

    variant = Variant(variant)
    if not (variant.config_source / "model_index.json").is_file():
        raise SkeletonError(
            f"{out}: the real {variant.value} configs are not bundled yet "
            f"(resources/model_configs/{variant.family.value}/{variant.value}/), so its skeleton cannot be written"
        )
    if single_file and variant.family.value in _NO_SINGLE_FILE:
        raise SkeletonError(
            f"{out}: single-file {variant.value} skeletons are not written yet; leave out --single-file for a diffusers folder"
        )
    if dtype not in DTYPES:
        raise SkeletonError(f"unknown dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    torch_dtype = DTYPES[dtype]
    out = Path(out).expanduser()
    meta = {"loraloom_skeleton": variant.value, "seed": str(seed)}
    try:
        if single_file:
            target = out / f"{variant.value}.safetensors"
            if target.exists() and not overwrite:
                raise SkeletonError(f"{target} already exists; choose another folder or replace it (--overwrite)")
            _write_single_file(target, variant, torch_dtype, seed, meta)
            return target
        _check_target(out, overwrite)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            tmp.chmod(0o755)
            _write_folder(tmp, variant, torch_dtype, seed, meta)
            _move_into_place(tmp, out, overwrite)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return out
    except FileExistsError as exc:
        raise SkeletonError(str(exc)) from None
    except OSError as exc:
        raise SkeletonError(f"{out}: could not write the skeleton ({exc.strerror or exc})") from None


def _write_folder(folder: Path, variant: Variant, dtype: torch.dtype, seed: int, meta: dict) -> None:
    shutil.copytree(config_folder(variant), folder, dirs_exist_ok=True)
    for comp in components(variant):
        shapes = component_shapes(variant, comp)
        entries = [(name, shape, dtype) for name, shape in shapes.items()]
        write_safetensors_streamed(
            folder / comp / _weights_name(comp),
            entries,
            lambda i, e=entries: random_tensor(e[i][0], e[i][1], dtype, seed),
            metadata={"format": "pt", **meta},
        )
    (folder / "loraloom_skeleton.json").write_text(
        json.dumps({"variant": variant.value, "seed": seed, "dtype": str(dtype).removeprefix("torch.")}) + "\n",
        encoding="utf-8",
    )


def write_bfl_transformer(
    target: Path, config: dict, shapes: dict[str, tuple[int, ...]], dtype: torch.dtype, seed: int, meta: dict
) -> None:
    """A Flux.1 transformer-only file as ComfyUI/Forge keep ``flux1-dev.safetensors``: BFL names
    (:mod:`app.engine.flux_state`) holding the values the diffusers folder of that seed holds.
    ``shapes``: the transformer's diffusers names -> shapes (:func:`component_shapes`)."""
    from app.engine import flux_state

    plan = flux_state.bfl_plan(config)
    names = list(plan)
    entries = [(b, (sum(shapes[n][0] for n in plan[b][0]),) + shapes[plan[b][0][0]][1:], dtype) for b in names]

    def make(i: int) -> torch.Tensor:
        parts, _, swap = plan[names[i]]
        return flux_state.bfl_tensor([random_tensor(n, shapes[n], dtype, seed) for n in parts], swap)

    write_safetensors_streamed(target, entries, make, metadata={"format": "pt", **meta})


def _write_single_file(target: Path, variant: Variant, dtype: torch.dtype, seed: int, meta: dict) -> None:
    if variant.family.value in _BFL_FILE:
        config, shapes = component_config(variant, "transformer"), component_shapes(variant, "transformer")
        write_bfl_transformer(target, config, shapes, dtype, seed, meta)
        return
    plan = []  # (ldm name, ldm shape, parts, the component's shapes)
    for comp in components(variant):
        shapes = component_shapes(variant, comp)
        plan += [(ldm, shape, parts, shapes) for ldm, shape, parts in ldm_tensors(variant, comp, shapes)]
    entries = [(ldm, shape, dtype) for ldm, shape, _, _ in plan]

    def make(i: int) -> torch.Tensor:
        ldm, shape, parts, shapes = plan[i]
        return ldm_value(ldm, shape, parts, shapes, dtype, seed)

    write_safetensors_streamed(target, entries, make, metadata={"format": "pt", **meta})
