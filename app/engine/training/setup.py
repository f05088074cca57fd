"""Before the first step: checks, device and precision, optimizer, schedule, caches.

Cheap checks come first (config, base-model path, datasets, optimizer package), so a
bad setting fails in a second with one sentence instead of after a model load.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from app.core.configs import DevicePref
from app.core.dataset.scan import DatasetError
from app.core.families import Family
from app.core.train_config import LRSchedule, MixedPrecision, Optimizer, TrainConfig
from app.engine import lora_files
from app.engine.families import engine
from app.engine.models import ModelSource, check_source
from app.engine.training.caches import LatentCache, TextCache
from app.engine.training.data import TrainData, TrainError, bucket_info, collect
from app.engine.training.network import MUTATES_BASE

log = logging.getLogger(__name__)

SCHEDULE_NAMES = {LRSchedule.CONSTANT: "constant_with_warmup", LRSchedule.COSINE: "cosine", LRSchedule.LINEAR: "linear"}


def preflight(config: TrainConfig, should_stop: Callable[[], bool] | None = None) -> tuple[ModelSource, TrainData]:
    config.check_ready()
    source = check_source(config.base)
    if source.family is not None:  # a Hub model's family is known once it is loaded (build_session)
        check_family_options(config, source.family)
    check_optimizer(config.optimizer.kind)
    data = collect(config, should_stop)
    return source, data


def check_family_options(config: TrainConfig, family: Family) -> None:
    """Refuse, in one sentence, the settings this family's training cannot honour."""
    from app.core import families
    from app.engine.training.losses import family_problem

    problem = family_problem(config.loss, engine(family).snr_loss_options, families.label(family))
    if problem is not None:
        raise TrainError(problem)


def check_optimizer(kind: Optimizer) -> None:
    if kind is Optimizer.ADAMW_8BIT and importlib.util.find_spec("bitsandbytes") is None:
        raise TrainError(
            "optimizer 'adamw8bit' needs the bitsandbytes package (pip install bitsandbytes) "
            'and a CUDA GPU; use kind = "adamw" instead'
        )
    if kind is Optimizer.PRODIGY and importlib.util.find_spec("prodigyopt") is None:
        raise TrainError("optimizer 'prodigy' needs the prodigyopt package (pip install prodigyopt)")


def accelerate_settings(config: TrainConfig) -> dict[str, Any]:
    """Accelerator kwargs: CPU when asked or when there is no GPU; precision that the device has."""
    want_cpu = config.device is DevicePref.CPU or (
        config.device is DevicePref.AUTO
        and not torch.cuda.is_available()
        and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    )
    if config.device is DevicePref.CUDA and not torch.cuda.is_available():
        raise TrainError("device 'cuda' was asked for but no CUDA GPU is available")
    precision = config.mixed_precision
    if want_cpu or not torch.cuda.is_available():
        if precision not in (MixedPrecision.AUTO, MixedPrecision.FP32):
            log.warning("mixed_precision %s is for GPUs; training in fp32 on this device", precision.value)
        mixed = "no"
    elif precision is MixedPrecision.AUTO:
        mixed = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    else:
        mixed = {MixedPrecision.FP32: "no", MixedPrecision.FP16: "fp16", MixedPrecision.BF16: "bf16"}[precision]
    return {"cpu": want_cpu, "mixed_precision": mixed}


def weight_dtype(mixed: str) -> torch.dtype:
    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed, torch.float32)


def make_optimizer(config: TrainConfig, unet_params: list, text_params: list) -> torch.optim.Optimizer:
    opts = config.optimizer
    groups = [{"params": unet_params, "lr": opts.learning_rate}]
    if text_params:
        te_lr = config.network.text_encoder_lr if opts.kind is not Optimizer.PRODIGY else opts.learning_rate
        groups.append({"params": text_params, "lr": te_lr})
    if opts.kind is Optimizer.ADAMW:
        return torch.optim.AdamW(groups, lr=opts.learning_rate, weight_decay=opts.weight_decay)
    if opts.kind is Optimizer.ADAMW_8BIT:
        try:
            import bitsandbytes as bnb
        except Exception as exc:  # installed but broken (no CUDA build, ...)
            raise TrainError(
                f"optimizer 'adamw8bit': bitsandbytes does not load here ({exc}); use kind = \"adamw\""
            ) from None
        return bnb.optim.AdamW8bit(groups, lr=opts.learning_rate, weight_decay=opts.weight_decay)
    from prodigyopt import Prodigy

    return Prodigy(
        groups,
        lr=opts.learning_rate,
        weight_decay=opts.weight_decay,
        safeguard_warmup=opts.warmup_steps > 0,
        use_bias_correction=True,
    )


def make_lr_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer):
    from diffusers.optimization import get_scheduler

    return get_scheduler(
        SCHEDULE_NAMES[config.optimizer.schedule],
        optimizer,
        num_warmup_steps=config.optimizer.warmup_steps,
        num_training_steps=config.steps,
    )


def text_encoders_of(pipe: Any) -> list[torch.nn.Module]:
    return [te for te in (getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)) if te is not None]


def make_encoder(pipe: Any, family: Family, device: torch.device) -> Callable[[list[str]], dict]:
    """captions -> {"embeds": (B, L, D)[, "pooled": (B, D2)]}, exactly as the pipeline encodes prompts."""

    def encode(captions: list[str]) -> dict[str, torch.Tensor]:
        if not text_encoders_of(pipe):  # released after caching; every caption of the run was cached
            raise TrainError(f"caption {captions[0]!r} was not cached before the text encoders were released")
        return engine(family).encode_for_training(pipe, captions, device)

    return encode


def release_text_encoders(pipe: Any) -> list[torch.nn.Module]:
    """Drop the frozen text encoders once every caption is cached (Flux's T5-XXL alone is 9 GB in
    bf16): the steps and the sample renders use the cached embeddings. Returns what is left (none)."""
    for name in ("text_encoder", "text_encoder_2"):
        if getattr(pipe, name, None) is not None:
            setattr(pipe, name, None)
    return []


def store_fp8(denoiser: torch.nn.Module) -> torch.dtype:
    """The denoiser's base weights stored as float8_e4m3fn and computed in bf16 (diffusers'
    layerwise casting), before the LoRA layers are added (they train in fp32, see ``attach``).
    Returns the dtype the denoiser's inputs take (bf16)."""
    denoiser.to(dtype=torch.bfloat16)
    denoiser.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.bfloat16)
    return torch.bfloat16


def fill_latent_cache(
    cache: LatentCache,
    data: TrainData,
    flip: bool,
    device: torch.device,
    progress: Callable[[int, int], None],
    should_stop: Callable[[], bool],
) -> tuple[bool, dict[Path, str]]:
    """Encode every (picture, bucket, flip) not cached yet: (False when stopped part way, and
    {path: "path: problem"} for each picture that passed the header scan but cannot be decoded or read)."""
    jobs = [(item, f) for item in data.items for f in ((False, True) if flip else (False,))]
    jobs += [(item, False) for item in data.validation]
    bad: dict[Path, str] = {}
    for index, (item, f) in enumerate(jobs):
        if should_stop():
            return False, bad
        if item.path not in bad:
            try:
                cache.ensure(item.path, item.size, item.bucket, f, device)
            except DatasetError as exc:  # one bad picture is skipped, never the end of the run
                bad[item.path] = str(exc)
        progress(index + 1, len(jobs))
    return True, bad


def drop_unreadable(data: TrainData, bad: dict[Path, str]) -> TrainData:
    """``data`` without the pictures of ``bad`` (from :func:`fill_latent_cache`); refuse when no
    training picture is left."""
    items = [item for item in data.items if item.path not in bad]
    held = [item for item in data.validation if item.path not in bad]
    lines = list(bad.values())
    if not any(not item.regularization for item in items):
        raise TrainError(
            f"no usable training picture left: {len(lines)} picture(s) could not be read (first: {lines[0]})"
        )
    return replace(data, items=items, validation=held, skipped=data.skipped + lines)


def fill_text_cache(cache: TextCache, captions: list[str], batch: int = 16) -> None:
    unique = list(dict.fromkeys(captions))
    for i in range(0, len(unique), batch):
        cache.get_many(unique[i : i + batch])


def adapter_info(
    config: TrainConfig,
    family: Family,
    scheduler: Any,
    data: TrainData,
    started_at: float,
    step: int,
    epoch: int,
    epochs: int = 0,
) -> lora_files.AdapterInfo:
    """What the saved adapter's kohya metadata says about this run."""
    net_opts = config.network
    # A pissa/olora adapter is saved as a plain LoRA of twice the rank (alpha / rank unchanged).
    widen = 2 if net_opts.init in MUTATES_BASE else 1
    try:
        import tomli_w

        config_toml = tomli_w.dumps(config.to_dict())
    except Exception:  # metadata is best effort
        config_toml = ""
    return lora_files.AdapterInfo(
        family=family,
        name=config.name,
        rank=net_opts.rank * widen,
        alpha=net_opts.alpha * widen,
        resolution=(config.data.resolution, config.data.resolution),
        steps=step,
        epoch=epoch,
        learning_rate=config.optimizer.learning_rate,
        optimizer=config.optimizer.kind.value,
        trigger=config.trigger,
        conv_rank=net_opts.conv_rank,
        conv_alpha=net_opts.conv_alpha,
        dora=net_opts.dora,
        v_prediction=scheduler.config.get("prediction_type") == "v_prediction",  # flow matching has none
        tag_frequency=data.tag_frequency,
        started_at=started_at,
        config_toml=config_toml,
        base_model=config.base,
        epochs=epochs,
        num_train_images=sum(item.repeats for item in data.train_items),
        dataset_dirs=data.dataset_dirs,
        bucket_info=bucket_info(data) if config.data.bucketing else None,
    )


def picture_keys(data: TrainData, latents: LatentCache) -> dict[str, str]:
    """path -> a short hash of the picture's bytes (as the latent cache keyed it) and its caption."""
    out = {}
    for item in data.items:
        digest = hashlib.blake2b(f"{latents.content_hash(item.path)}\0{item.caption}".encode(), digest_size=8)
        out[str(item.path)] = digest.hexdigest()
    return out


def dataset_change(saved: dict[str, str] | None, now: dict[str, str]) -> str | None:
    """A warning when the pictures (or their captions) differ from those of the saved state."""
    if saved is None:
        return None  # saved before runs recorded their pictures
    changed = sum(1 for p in now if p in saved and saved[p] != now[p])
    added = sum(1 for p in now if p not in saved)
    removed = sum(1 for p in saved if p not in now)
    total = changed + added + removed
    if not total:
        return None
    return (
        f"the dataset changed since the run stopped: {total} picture(s) differ ({changed} changed or "
        f"recaptioned, {added} added, {removed} removed); the run goes on with the pictures as they are now, "
        "so it will not repeat an uninterrupted run exactly"
    )
