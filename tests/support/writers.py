"""Adapter files written by the real writing libraries, with that library's own forward as the truth.

lycoris-lora (``create_lycoris``) and peft (``add_adapter``) put their layers into a
*reference* pipeline with seeded random (non-zero) factors; the file is saved the way
each tool saves it (lycoris ``state_dict`` / diffusers ``save_lora_weights`` /
``convert_state_dict_to_kohya`` / ``PeftModel.save_pretrained``). The expected outputs are
the reference pipeline's own forward with the adapter active at a weight; LoRA Loom's
patched pipeline must give the same numbers.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import nn

PARTS = ("unet", "text_encoder", "text_encoder_2")
KOHYA_PREFIX = {"unet": "lora_unet", "text_encoder": "lora_te", "text_encoder_2": "lora_te2"}


# ---------------------------------------------------------------- outputs to compare


def fixed_inputs(pipe, seed: int = 0) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(seed)
    unet = pipe.unet
    cfg = unet.config
    inputs: dict[str, Any] = {
        "ids": torch.randint(1, pipe.tokenizer.vocab_size - 2, (1, 12), generator=gen),
        "sample": torch.randn(1, cfg.in_channels, cfg.sample_size, cfg.sample_size, generator=gen),
        "t": torch.tensor([37]),
        "ehs": torch.randn(1, 12, cfg.cross_attention_dim, generator=gen),
    }
    if cfg.addition_embed_type == "text_time":
        text = cfg.projection_class_embeddings_input_dim - 6 * cfg.addition_time_embed_dim
        inputs["added"] = {
            "text_embeds": torch.randn(1, text, generator=gen),
            "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]),
        }
    return inputs


def outputs(pipe, inputs: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Each text encoder's hidden states and the UNet's prediction on fixed inputs."""
    out = {}
    with torch.inference_mode():
        for part in ("text_encoder", "text_encoder_2"):
            encoder = getattr(pipe, part, None)
            if encoder is not None:
                out[part] = encoder(inputs["ids"], output_hidden_states=True).hidden_states[-2].clone()
        kwargs = {"added_cond_kwargs": inputs["added"]} if "added" in inputs else {}
        out["unet"] = pipe.unet(inputs["sample"], inputs["t"], inputs["ehs"], **kwargs).sample.clone()
    return out


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float((a[k].float() - b[k].float()).abs().max()) for k in a if k in b}


# ---------------------------------------------------------------- lycoris-lora


# The attention projections and resnet convs (lycoris-lora wraps the Linear/Conv layers inside
# modules of these classes): every kind of layer, at half the layers of its "full" preset.
TARGET_CLASSES = ["Attention", "ResnetBlock2D", "CLIPAttention"]


@contextlib.contextmanager
def lycoris_targets(prefix: str) -> Iterator[None]:
    """LycorisNetwork keeps its key prefix and targets on the class; kohya's LyCORIS writes lora_unet/lora_te."""
    from lycoris import LycorisNetwork

    old = LycorisNetwork.LORA_PREFIX, LycorisNetwork.TARGET_REPLACE_MODULE
    LycorisNetwork.LORA_PREFIX, LycorisNetwork.TARGET_REPLACE_MODULE = prefix, TARGET_CLASSES
    try:
        yield
    finally:
        LycorisNetwork.LORA_PREFIX, LycorisNetwork.TARGET_REPLACE_MODULE = old


class Written:
    """A file on disk plus the live writer objects in the reference pipeline."""

    def __init__(
        self,
        path: Path,
        set_weight: Callable[[float], None],
        remove: Callable[[], None],
        writers: list[Any] | None = None,
    ) -> None:
        self.path = path
        self.writers = writers or []  # the writer's own objects (LycorisNetwork …), for diagnosis
        self.set_weight = set_weight
        self.remove = remove


def _randomise(
    params: Iterator[tuple[str, nn.Parameter]], gen: torch.Generator, sigma: float, perturb: bool = False
) -> None:
    """Random non-zero factors; ``perturb``: the parameters are whole weights (LyCORIS full), nudge them."""
    with torch.no_grad():
        for name, p in params:
            if perturb:
                p.add_(torch.randn(p.shape, generator=gen) * sigma)
            elif "dora_scale" in name or "magnitude" in name:
                p.mul_(1.0 + 0.5 * torch.rand(p.shape, generator=gen))  # keep magnitudes positive
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * sigma)


def lycoris_file(
    pipe,
    path: Path,
    algo: str,
    *,
    seed: int = 0,
    te: bool = True,
    prefix: str | None = None,
    sigma: float = 0.1,
    rank: int = 4,
    alpha: float = 2.0,
    glora_tucker: bool = False,
    **kwargs: Any,
) -> Written:
    """Wrap the pipeline's layers with lycoris-lora's ``create_lycoris`` and save its state dict.

    ``prefix=None``: kohya's LyCORIS names (``lora_unet_`` / ``lora_te[12]_``); a string: that
    one prefix for the UNet only (SimpleTuner writes ``lycoris_``).
    """
    from lycoris import create_lycoris

    gen = torch.Generator().manual_seed(seed)
    xl = getattr(pipe, "text_encoder_2", None) is not None
    parts = [("unet", pipe.unet)]
    if te and prefix is None:
        parts.append(("text_encoder", pipe.text_encoder))
        if xl:
            parts.append(("text_encoder_2", pipe.text_encoder_2))
    nets = []
    state: dict[str, torch.Tensor] = {}
    for part, module in parts:
        name = prefix or ("lora_te1" if xl and part == "text_encoder" else KOHYA_PREFIX[part])
        with lycoris_targets(name):
            net = create_lycoris(
                module,
                1.0,
                linear_dim=rank,
                linear_alpha=alpha,
                algo=algo,
                preset="full",
                warn_on_unmatched=False,
                **kwargs,
            )
        if glora_tucker:
            _glora_tucker(net)
        net.apply_to()
        _randomise(net.named_parameters(), gen, sigma, perturb=algo == "full")
        nets.append(net)
        state.update({k: v.detach().clone().contiguous() for k, v in net.state_dict().items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        state,
        str(path),
        metadata={"ss_network_module": "lycoris.kohya", "ss_network_args": json.dumps({"algo": algo, **kwargs})},
    )

    def set_weight(w: float) -> None:
        for net in nets:
            net.set_multiplier(w)

    def remove() -> None:
        for net in nets:
            net.restore()

    return Written(path, set_weight, remove, nets)


def _glora_tucker(net) -> None:
    """Give each GLoRA layer on a conv over 1x1 lycoris' own tucker form (b2 1x1, core ``bm``).

    lycoris-lora 4.1.3 cannot make it: ``GLoRAModule.__init__`` first sets
    ``use_tucker = use_tucker and all(i == 1 for i in k_size)`` and then builds ``bm`` only
    ``if use_tucker and any(i != 1 for i in k_size)``, which is never true. Its forward,
    ``make_weight`` and ``custom_state_dict`` do handle ``bm``, so the layers are set up as
    that branch would have, and lycoris' own forward stays the truth.
    """
    from lycoris.modules.glora import GLoRAModule

    for module in net.loras:
        if isinstance(module, GLoRAModule) and module.isconv and module.b2.kernel_size != (1, 1):
            b2 = module.b2
            module.b2 = nn.Conv2d(b2.in_channels, module.lora_dim, 1, bias=False)
            module.bm = nn.Conv2d(module.lora_dim, module.lora_dim, b2.kernel_size, b2.stride, b2.padding, bias=False)
            module.tucker = True


# ---------------------------------------------------------------- peft / diffusers


def _targets(module: nn.Module, convs: bool) -> list[str]:
    names = []
    for path, m in module.named_modules():
        if (
            isinstance(m, nn.Linear)
            and path.endswith(
                ("to_q", "to_k", "to_v", "to_out.0", "q_proj", "k_proj", "v_proj", "out_proj", "proj_in", "proj_out")
            )
            or convs
            and isinstance(m, nn.Conv2d)
            and path.endswith(("conv1", "conv2", "proj_in", "proj_out"))
        ):
            names.append(path)
    return names


def peft_file(
    pipe,
    path: Path,
    *,
    how: str = "diffusers",
    seed: int = 0,
    te: bool = True,
    rank: int = 4,
    alpha: float = 8.0,
    convs: bool = False,
    metadata: bool = True,
    sigma: float = 0.2,
    **config: Any,
) -> Written:
    """peft layers added with ``add_adapter``; saved as ``how``:

    ``diffusers``: ``save_lora_weights`` (alpha in ``lora_adapter_metadata`` unless ``metadata=False``);
    ``kohya``: diffusers' ``convert_state_dict_to_kohya`` (alpha written as the rank);
    ``peft``: ``PeftModel.save_pretrained`` of the UNet (``adapter_config.json`` beside it).
    """
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, inject_adapter_in_model
    from peft.tuners.lora import LoraLayer

    gen = torch.Generator().manual_seed(seed)
    parts = ["unet"] + ([p for p in PARTS[1:] if getattr(pipe, p, None) is not None] if te and how != "peft" else [])
    name = "default" if how == "peft" else "corpus"
    configs, wrapped = {}, None
    for part in parts:
        module = getattr(pipe, part)
        cfg = LoraConfig(
            r=rank,
            lora_alpha=alpha,
            target_modules=_targets(module, convs and part == "unet"),
            init_lora_weights=False,
            **config,
        )
        if how == "peft":
            wrapped = get_peft_model(module, cfg)  # injects into the pipeline's own UNet
        else:  # what diffusers' add_adapter does (transformers' own wants a newer peft)
            inject_adapter_in_model(cfg, module, adapter_name=name)
        _randomise(((n, p) for n, p in module.named_parameters() if f".{name}" in n and "lora_A" not in n), gen, sigma)
        configs[part] = cfg
    path.parent.mkdir(parents=True, exist_ok=True)
    if wrapped is not None:
        wrapped.save_pretrained(str(path.parent), safe_serialization=True)
        (path.parent / "adapter_model.safetensors").rename(path)
    elif how == "kohya":
        from diffusers.utils import convert_state_dict_to_kohya

        flat = {
            f"{part}.{k}": v
            for part in parts
            for k, v in get_peft_model_state_dict(getattr(pipe, part), adapter_name=name).items()
        }
        save_file({k: v.contiguous() for k, v in convert_state_dict_to_kohya(flat).items()}, str(path))
    else:
        from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

        cls = StableDiffusionXLPipeline if "text_encoder_2" in parts else StableDiffusionPipeline
        kwargs: dict[str, Any] = {}
        for part in parts:
            kwargs[f"{part}_lora_layers"] = get_peft_model_state_dict(getattr(pipe, part), adapter_name=name)
            if metadata:
                kwargs[f"{part}_lora_adapter_metadata"] = configs[part].to_dict()
        cls.save_lora_weights(str(path.parent), weight_name=path.name, **kwargs)

    def set_weight(w: float) -> None:
        for part in parts:
            for m in getattr(pipe, part).modules():
                if isinstance(m, LoraLayer):
                    m.set_scale(name, w)

    def remove() -> None:
        if wrapped is not None:
            wrapped.unload()  # takes the peft layers out of the UNet again
            return
        for part in parts:
            _unwrap(getattr(pipe, part))

    return Written(path, set_weight, remove)


def _unwrap(module: nn.Module) -> None:
    """Put every layer peft wrapped back in its place, so the next writer sees the bare model."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for path, m in list(module.named_modules()):
        if isinstance(m, BaseTunerLayer):
            parent_path, _, name = path.rpartition(".")
            setattr(module.get_submodule(parent_path) if parent_path else module, name, m.get_base_layer())
    module.__dict__.pop("peft_config", None)


def lycoris_dora_modules(pipe, path: Path, *, wd_on_out: bool) -> Written:
    """lycoris-lora's own DoRA layers (``LoConModule``) in ``pipe``, loaded from a kohya file on one axis.

    lycoris' ``create_lycoris_from_weights`` builds every DoRA on the output axis (its
    ``make_module_from_state_dict`` takes no axis), so an input-axis file is put into modules
    built with ``wd_on_out=False`` here, the way lycoris trains them.
    """
    from lycoris.modules.locon import LoConModule
    from safetensors.torch import load_file

    from app.engine.layer_index import LayerIndex

    index = LayerIndex(pipe)
    sd = load_file(str(path))
    modules = []
    for key in sorted(k for k in sd if k.endswith(".dora_scale")):
        name = key[: -len(".dora_scale")]
        down, up = sd[f"{name}.lora_down.weight"], sd[f"{name}.lora_up.weight"]
        target = index.modules[index.resolve(name)]
        module = LoConModule(
            name,
            target,
            1.0,
            lora_dim=down.shape[0],
            alpha=float(sd[f"{name}.alpha"]),
            weight_decompose=True,
            wd_on_out=wd_on_out,
        )
        with torch.no_grad():
            module.lora_down.weight.copy_(down)
            module.lora_up.weight.copy_(up)
            module.dora_scale.copy_(sd[key])
        module.apply_to()
        modules.append(module)

    def set_weight(w: float) -> None:
        for m in modules:
            m.multiplier = w

    def remove() -> None:
        for m in modules:
            m.restore()

    return Written(path, set_weight, remove, modules)
