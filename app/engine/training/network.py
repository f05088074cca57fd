"""The trainable network: peft LoRA layers on the UNet (and optionally the text encoders).

Target presets follow kohya: ``attention`` (q/k/v/out), ``attention_ff`` (everything
inside the transformer blocks: + feed-forward and proj_in/proj_out, kohya's "LoRA")
and ``locon`` (+ ResNet convs, time projections and the down/up-sampler convs). 3x3
convs may get their own rank and alpha (kohya's conv_dim / conv_alpha).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model, set_peft_model_state_dict

from app.core.families import Family
from app.core.train_config import NetworkOptions, Targets
from app.core.train_options import LoraInit
from app.engine import lora_files
from app.engine.families import engine

TEXT = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
# peft's init_lora_weights for each choice. pissa and olora move part of W0 into the adapter;
# peft refuses them for convs (SD1's proj_in is a 1x1 conv), so layers start kaiming and then
# the linear ones are re-initialised from their weights (:func:`_init_from_base`).
PEFT_INIT: dict[LoraInit, bool | str] = {LoraInit.GAUSSIAN: "gaussian", LoraInit.KAIMING: True}
MUTATES_BASE = (LoraInit.PISSA, LoraInit.OLORA)


def unet_target_names(unet: torch.nn.Module, targets: Targets, family: Family) -> list[str]:
    """Full module paths of the denoiser layers that ``targets`` selects (the family engine's choice)."""
    return engine(family).lora_target_names(unet, targets)


def text_target_names(encoder: torch.nn.Module) -> list[str]:
    return [
        name
        for name, module in encoder.named_modules()
        if isinstance(module, torch.nn.Linear)
        and ".layers." in f".{name}"
        and any(name.endswith("." + s) for s in TEXT)
    ]


def _is_big_conv(module: torch.nn.Module) -> bool:
    return isinstance(module, torch.nn.Conv2d) and tuple(module.kernel_size) != (1, 1)


def unet_lora_config(unet: torch.nn.Module, opts: NetworkOptions, family: Family) -> LoraConfig:
    names = unet_target_names(unet, opts.targets, family)
    modules = dict(unet.named_modules())
    rank_pattern: dict[str, int] = {}
    alpha_pattern: dict[str, float] = {}
    if opts.conv_rank or opts.conv_alpha:
        for name in names:
            if _is_big_conv(modules[name]):
                rank_pattern[re.escape(name)] = opts.conv_rank or opts.rank
                alpha_pattern[re.escape(name)] = opts.conv_alpha or opts.alpha
    return LoraConfig(
        r=opts.rank,
        lora_alpha=opts.alpha,
        lora_dropout=opts.dropout,
        use_dora=opts.dora,
        init_lora_weights=PEFT_INIT.get(opts.init, True),
        target_modules=names,
        rank_pattern=rank_pattern,
        alpha_pattern=alpha_pattern,
    )


def text_lora_config(encoder: torch.nn.Module, opts: NetworkOptions) -> LoraConfig:
    return LoraConfig(
        r=opts.rank,
        lora_alpha=opts.alpha,
        lora_dropout=opts.dropout,
        use_dora=opts.dora,
        init_lora_weights=PEFT_INIT.get(opts.init, True),
        target_modules=text_target_names(encoder),
    )


@dataclass
class Network:
    """The models that carry LoRA layers and their trainable parameters."""

    family: Family
    unet: torch.nn.Module
    text_encoders: list[torch.nn.Module] = field(default_factory=list)  # only those that train
    unet_config: LoraConfig | None = None
    text_configs: list[LoraConfig] = field(default_factory=list)
    # pissa / olora: the adapter as initialised (``state()`` keys); the base weights then hold
    # W0 - B0 A0, so a saved file carries B A - B0 A0 to apply on the untouched base.
    initial: dict[str, torch.Tensor] | None = None

    def parts(self) -> list[tuple[str, torch.nn.Module, bool]]:
        """(state prefix, module, is text encoder) for every adapted model."""
        names = ("text_encoder", "text_encoder_2")
        return [("unet", self.unet, False)] + [(names[i], te, True) for i, te in enumerate(self.text_encoders)]

    def unet_parameters(self) -> list[torch.nn.Parameter]:
        # Collected explicitly: peft marks every adapter it holds trainable, not only ours.
        return [p for n, p in self.unet.named_parameters() if ".default" in n and "lora_" in n]

    def text_parameters(self) -> list[torch.nn.Parameter]:
        return [p for te in self.text_encoders for n, p in te.named_parameters() if ".default" in n and "lora_" in n]

    def parameters(self) -> list[torch.nn.Parameter]:
        return self.unet_parameters() + self.text_parameters()

    # ------------------------------------------------------------ state
    def state(self) -> dict[str, torch.Tensor]:
        """Every adapter tensor, exact (for resume), keyed ``<part>.<peft key>``."""
        out = {}
        for prefix, module, _ in self.parts():
            for key, value in get_peft_model_state_dict(module).items():
                out[f"{prefix}.{key}"] = value.detach().to("cpu").clone()
        return out

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        for prefix, module, _ in self.parts():
            part = {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
            result = set_peft_model_state_dict(module, part)
            unexpected = getattr(result, "unexpected_keys", None) or []
            if unexpected:
                raise ValueError(f"saved state does not fit this network ({unexpected[0]})")

    def peft_states(self) -> list[tuple[dict[str, torch.Tensor], dict[str, float]]]:
        """(peft state dict, alpha per module path) of every part, as a LoRA on the untouched base."""
        out = []
        for prefix, module, _ in self.parts():
            state, alphas = get_peft_model_state_dict(module), lora_files.peft_alphas(module)
            if self.initial is not None:
                start = {k[len(prefix) + 1 :]: v for k, v in self.initial.items() if k.startswith(prefix + ".")}
                state, alphas = plain_lora(state, start, alphas)
            out.append((state, alphas))
        return out

    def kohya_tensors(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """The adapter in the kohya layout (``lora_unet_*``, ``lora_te*_``) with true alphas."""
        prefixes = lora_files.te_prefixes(self.family)
        (state, alphas), *texts = self.peft_states()  # pissa/olora: already a LoRA on the untouched base
        modules = dict(self.unet.named_modules())
        out: dict[str, torch.Tensor] = {}
        for name, members in engine(self.family).kohya_layout(self.unet, sorted(alphas)).items():
            out.update(_kohya_layer(name, members, state, alphas, modules, dtype))
        for i, (te_state, te_alphas) in enumerate(texts):
            out.update(lora_files.peft_to_kohya(te_state, prefixes[i], te_alphas, is_text_encoder=True, dtype=dtype))
        return out


def _kohya_layer(
    name: str,
    members: tuple[str, ...],
    state: dict[str, torch.Tensor],
    alphas: dict[str, float],
    modules: dict[str, torch.nn.Module],
    dtype: torch.dtype,
) -> dict[str, torch.Tensor]:
    """One kohya layer ``lora_unet_<name>`` from the LoRA(s) of ``members``. A fused layer (Flux's
    q/k/v) stacks the downs and puts the ups block-diagonal, so up @ down * alpha / rank is each
    member's own delta in its rows (and zero rows for a member without a LoRA)."""
    key = lora_files.kohya_key(lora_files.UNET, name)
    if len(members) == 1:
        own = {k: v for k, v in state.items() if k.startswith(members[0] + ".lora_")}
        converted = lora_files.peft_to_kohya(own, lora_files.UNET, alphas, dtype=dtype)
        old = lora_files.kohya_key(lora_files.UNET, members[0])
        return {key + k[len(old) :]: v for k, v in converted.items()}
    trained = [m for m in members if m in alphas]
    if any(f"{m}.lora_magnitude_vector" in state for m in trained):
        raise ValueError(f"{name}: DoRA cannot be saved on a fused layer; train without dora")
    scale = alphas[trained[0]] / state[f"{trained[0]}.lora_A.weight"].shape[0]  # the fused layer's
    ups, downs = [], []
    for m in members:
        if m in alphas:  # another member's own scale (rank or alpha pattern) is folded into its up
            up, down = state[f"{m}.lora_B.weight"].float(), state[f"{m}.lora_A.weight"].float()
            own = alphas[m] / down.shape[0]
            ups.append(up if own == scale else up * (own / scale))
            downs.append(down)
        else:  # zero rows, no rank
            ups.append(torch.zeros(modules[m].out_features, 0))
    up, rank = torch.block_diag(*ups), sum(d.shape[0] for d in downs)
    return {
        f"{key}.{lora_files.DOWN}": torch.cat(downs).to("cpu", dtype).contiguous(),
        f"{key}.{lora_files.UP}": up.to(dtype).contiguous(),
        f"{key}.{lora_files.ALPHA}": torch.tensor(scale * rank, dtype=torch.float32),
    }


def plain_lora(
    state: dict[str, torch.Tensor], start: dict[str, torch.Tensor], alphas: dict[str, float]
) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """A pissa/olora adapter as a LoRA for the untouched base (peft's ``subtract_mutated_init``):
    ΔW = s(B A - B0 A0) = s'[B | -B0][A ; A0] with the rank doubled, so alpha doubles to keep
    s = alpha / rank. Layers whose B0 was zero (convs, which peft starts as kaiming) stay as they are."""
    out, new_alphas = dict(state), dict(alphas)
    for key, a in state.items():
        if ".lora_A." not in key:
            continue
        path = key.split(".lora_A.")[0]
        b_key = key.replace(".lora_A.", ".lora_B.")
        a0, b0 = start[key].to(a.device, a.dtype), start[b_key].to(a.device, a.dtype)
        if not b0.any():
            continue
        out[key] = torch.cat([a, a0], dim=0)
        out[b_key] = torch.cat([state[b_key], -b0], dim=1)
        new_alphas[path] = 2 * alphas[path]
    return out, new_alphas


def attach(
    family: Family, unet: torch.nn.Module, text_encoders: list[torch.nn.Module], opts: NetworkOptions, seed: int
) -> Network:
    """Add LoRA layers (initialised from ``seed``); only those layers require grad afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        unet.requires_grad_(False)
        config = unet_lora_config(unet, opts, family)
        unet.add_adapter(config)
        text_configs = []
        trained = text_encoders[: engine(family).trainable_text_encoders] if opts.train_text_encoder else []
        for te in text_encoders:
            te.requires_grad_(False)
        for te in trained:
            te_config = text_lora_config(te, opts)
            # transformers' own add_adapter wants a newer peft; peft's injection is what it calls.
            inject_adapter_in_model(te_config, te, adapter_name="default")
            text_configs.append(te_config)
    net = Network(family=family, unet=unet, text_encoders=list(trained), unet_config=config, text_configs=text_configs)
    for p in net.parameters():
        p.requires_grad_(True)
        p.data = p.data.float()  # adapter weights train in fp32 whatever the base model's dtype
    if opts.init in MUTATES_BASE:
        for _, module, _ in net.parts():
            _init_from_base(module, opts.init)
        net.initial = net.state()
    return net


def _init_from_base(module: torch.nn.Module, init: LoraInit) -> None:
    """peft's pissa / olora initialisation of every linear LoRA layer (W0 becomes W0 - s B0 A0)."""
    from peft.tuners.lora.layer import Linear

    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, Linear) and "default" in layer.lora_A:
                if init is LoraInit.PISSA:
                    layer.pissa_init("default", "pissa")
                else:
                    layer.olora_init("default")
