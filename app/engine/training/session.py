"""What a training run holds, and how it is built before the first step.

::

    opened = open_run(config, resume, reporter)   # checks, accelerator, run folder
    session = build_session(opened, reporter)     # model, caches, network, optimizer, resume state
    result = loop(session)                        # app.engine.training.loop

The steps run in the order that keeps memory low (the VAE leaves the GPU before the UNet
comes) and the random streams as they were (a resumed run repeats the same losses).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.core import families, paths
from app.core.configs import DtypePref, ModelSpec
from app.core.events import ArtifactKind, ArtifactSaved, JobEvent, LogLevel, LogLine, Phase, Progress
from app.core.families import Family
from app.core.train_config import Prediction, TrainConfig
from app.core.train_requests import TrainRequest
from app.engine.families import engine
from app.engine.models import load_model
from app.engine.training import run as runs
from app.engine.training import setup, validation
from app.engine.training.caches import LatentCache, TextCache
from app.engine.training.data import Schedule, TrainData, TrainError
from app.engine.training.ema import WeightAverage
from app.engine.training.masks import MaskSet, build_masks
from app.engine.training.network import Network, attach

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    status: str  # "done" | "cancelled"
    run_dir: Path | None
    step: int
    final: Path | None = None
    checkpoints: list[Path] = field(default_factory=list)
    losses: dict[int, float] = field(default_factory=dict)  # step -> loss, this session
    skipped: list[str] = field(default_factory=list)
    val_losses: dict[int, float] = field(default_factory=dict)  # step -> validation loss, resumes included
    best: tuple[int, Path] | None = None  # (step, file) of the saved file with the lowest validation loss


@dataclass
class Reporter:
    """The run's way out: typed events (from the main process only), the stop flag, the GUI's requests."""

    on_event: Callable[[JobEvent], None]
    should_stop: Callable[[], bool]
    # Polled once per step (single process): "checkpoint" / "sample" / a TryPrompt asked for now (the GUI's buttons).
    take_requests: Callable[[], list[TrainRequest]]
    accelerator: Any = None

    def emit(self, event: JobEvent) -> None:
        if self.accelerator is None or self.accelerator.is_main_process:
            self.on_event(event)

    def status(self, message: str) -> None:
        log.info("%s", message)
        self.emit(LogLine(message))

    def warn(self, message: str) -> None:
        log.info("%s", message)  # info: the CLI and the GUI show the event, a warning would print twice
        self.emit(LogLine(message, LogLevel.WARNING))

    def stop_requested(self) -> bool:
        flag = bool(self.should_stop())
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            t = torch.tensor([1.0 if flag else 0.0], device=self.accelerator.device)
            flag = bool(self.accelerator.reduce(t, reduction="sum").item() > 0)
        return flag


@dataclass
class OpenedRun:
    """A run past its cheap checks: the config (a resume's own), the pictures, the accelerator, the folder."""

    config: TrainConfig
    data: TrainData  # build_session drops the pictures that turn out unreadable while caching
    accelerator: Any
    run_dir: runs.RunDir
    resumed: bool


@dataclass
class TrainSession:
    """Everything the loop reads and updates; built by :func:`build_session`."""

    config: TrainConfig
    reporter: Reporter
    accelerator: Any
    run_dir: runs.RunDir
    data: TrainData
    family: Family
    pipe: Any
    device: torch.device
    unet_dtype: torch.dtype  # diffusers' .dtype walks every module: too slow to ask per step
    noise_scheduler: Any
    latents: LatentCache
    text_cache: TextCache | None  # None when the text encoders train (captions encoded per step)
    encode: Callable[[list[str]], dict[str, torch.Tensor]]
    net: Network
    optimizer: Any  # accelerate's wrapper; .optimizer is the torch one
    lr_scheduler: Any
    schedule: Schedule
    started_at: float
    start_step: int = 0
    elapsed_before: float = 0.0  # training time of the sessions before a resume
    saved_step: int | None = None  # the step of the last whole checkpoint and resume state
    save_need: int = 0  # bytes one save writes (for "free N GB")
    masks: MaskSet | None = None  # loss weights per picture when [masks] is on
    val_losses: dict[int, float] = field(default_factory=dict)  # step -> validation loss, resumes included
    ema: WeightAverage | None = None  # the [ema] average of the adapter weights, when on


def open_run(config: TrainConfig | None, resume: str | Path | None, reporter: Reporter) -> OpenedRun:
    """Cheap checks first, then the accelerator and the run folder (a new one, or the resumed one)."""
    from accelerate import Accelerator

    if resume is not None:
        run_dir, config = runs.open_run_dir(resume, config)
    assert config is not None
    _source, data = setup.preflight(config, reporter.should_stop)
    data = validation.split(config, data, reporter.should_stop)
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        # accelerate keeps its state per process; a long-lived worker may train twice with
        # other precision or device settings, which accelerate refuses unless it starts afresh.
        from accelerate.state import AcceleratorState

        AcceleratorState._reset_state(reset_partial_state=True)
    acc = reporter.accelerator = Accelerator(**setup.accelerate_settings(config))
    if resume is None:
        run_dir = runs.new_run_dir(config) if acc.is_main_process else None
        if acc.num_processes > 1:
            from accelerate.utils import broadcast_object_list

            run_dir = broadcast_object_list([run_dir])[0]
    reporter.emit(ArtifactSaved(path=str(run_dir.path), kind=ArtifactKind.RUN))
    for line in data.skipped:
        reporter.warn(f"skipped {line}")
    for line in data.notes:
        reporter.warn(line)
    return OpenedRun(config, data, acc, run_dir, resumed=resume is not None)


def discard_if_unused(opened: OpenedRun) -> None:
    """After a failure: a new run folder that holds nothing worth keeping goes."""
    if not opened.resumed and opened.accelerator.is_main_process and runs.remove_if_unused(opened.run_dir):
        log.info("removed %s: the run failed before saving anything", opened.run_dir.path)


def _check_engine_options(config: TrainConfig, family: Family, eng: Any) -> None:
    """Options the family's engine does not offer, refused in one sentence each."""
    if config.fp8_base and not eng.fp8_base:
        raise TrainError(
            f"fp8_base = true is for the large transformer bases (Flux-class), and {config.base} is "
            f"{families.label(family)}: set fp8_base = false (mixed_precision already trains it in bf16 or fp16)"
        )
    if config.network.dora and not eng.dora_training:
        raise TrainError(
            f"network dora = true is not offered for {families.label(family)}: its q/k/v layers are saved "
            "fused, as sd-scripts writes them, where DoRA's per-layer scale has no place; set dora = false"
        )


def build_session(opened: OpenedRun, reporter: Reporter) -> TrainSession | None:
    """Model, caches, network and optimizer (and the saved state of a resume); None when stopped
    while caching."""
    config, acc, run_dir = opened.config, opened.accelerator, opened.run_dir
    # 1. The base model, on the CPU in fp32; the noise schedule the objective draws from.
    reporter.status(f"loading {config.base}")
    loaded = load_model(ModelSpec(base=config.base, device="cpu", dtype=DtypePref.FP32))
    family, pipe = loaded.family, loaded.pipe
    setup.check_family_options(config, family)  # again: a Hub model's family is known only now
    eng = engine(family)
    _check_engine_options(config, family, eng)
    device, wdtype = acc.device, setup.weight_dtype(acc.mixed_precision)
    prediction = config.prediction.value if config.prediction is not Prediction.AUTO else None
    scheduler = eng.noise_schedule(pipe, prediction)
    cache_root = Path(config.cache_dir).expanduser() if config.cache_dir else paths.cache_dir() / "train"

    # 2. Latents of every picture (and flip), encoded once; unreadable pictures are dropped.
    latents, done = _fill_latents(opened, reporter, pipe, cache_root, eng.vae_latents)
    if not done:
        return None
    data = opened.data

    # 3. Text encoders on the device; their outputs cached when they stay frozen.
    encoders, encode, text_cache = _text_setup(opened, pipe, family, cache_root, wdtype)

    # 4. The LoRA network on the denoiser (and the text encoders when they train).
    denoiser = eng.denoiser(pipe)
    _place(denoiser, device, wdtype)
    if config.fp8_base:  # before the LoRA layers: only the base layers get the casting hooks
        wdtype = setup.store_fp8(denoiser)
    net = _attach_network(config, family, pipe, encoders)

    # 5. Disk space, optimizer and learning-rate schedule.
    adapter_bytes = sum(p.numel() * 4 for p in net.parameters())
    save_need = 4 * adapter_bytes  # one checkpoint and one resume state (adapter, two moments)
    needs = runs.space_needed(config, adapter_bytes, len(data.items), eng.latent_channels(pipe.vae.config))
    warning = runs.space_warning(run_dir, cache_root, needs)
    if warning is not None:
        reporter.warn(warning)
    optimizer = setup.make_optimizer(config, net.unet_parameters(), net.text_parameters())
    lr_scheduler = setup.make_lr_scheduler(config, optimizer)
    optimizer = acc.prepare(optimizer)

    session = TrainSession(
        config=config,
        reporter=reporter,
        accelerator=acc,
        run_dir=run_dir,
        data=data,
        family=family,
        pipe=pipe,
        device=device,
        unet_dtype=wdtype,
        noise_scheduler=scheduler,
        latents=latents,
        text_cache=text_cache,
        encode=encode,
        net=net,
        optimizer=optimizer,
        lr_scheduler=lr_scheduler,
        schedule=Schedule(data, config.data.batch_size, config.seed, config.data.reg_weight),
        started_at=time.time(),
        save_need=save_need,
        masks=build_masks(
            config.masks, data.items + data.validation, config.data.flip, pipe.vae_scale_factor, reporter.warn
        ),
        ema=WeightAverage(net.parameters(), config.ema) if config.ema.enabled else None,
    )
    # 6. A resume continues from the saved state.
    if opened.resumed:
        _resume(session)
    return session


def _fill_latents(
    opened: OpenedRun, reporter: Reporter, pipe: Any, cache_root: Path, encode: Callable
) -> tuple[LatentCache, bool]:
    """The latent cache, filled (False when stopped part way); the main process fills it, the
    others then find every entry on disk."""
    config, acc, device = opened.config, opened.accelerator, opened.accelerator.device

    def progress(i: int, n: int) -> None:
        reporter.emit(Progress(step=i, total=n, phase=Phase.CACHING, message=f"caching latents {i}/{n}"))

    with acc.main_process_first():
        pipe.vae.to(device)  # loaded in fp32, and kept so (fp16 VAEs overflow)
        latents = LatentCache(cache_root, pipe.vae, encode=encode)
        done, unreadable = setup.fill_latent_cache(
            latents, opened.data, config.data.flip, device, progress, reporter.should_stop
        )
    if unreadable:
        opened.data = setup.drop_unreadable(opened.data, unreadable)
        for line in unreadable.values():
            reporter.warn(f"skipped {line}")
    return latents, done


def _text_setup(
    opened: OpenedRun, pipe: Any, family: Family, cache_root: Path, wdtype: torch.dtype
) -> tuple[list[torch.nn.Module], Callable[[list[str]], dict], TextCache | None]:
    """The text encoders on the device and, when they stay frozen, every caption (and sample
    prompt) cached; encoders the family releases once cached are gone afterwards. Returns
    (the encoders left, the encode function, the cache or None)."""
    config, acc, device = opened.config, opened.accelerator, opened.accelerator.device
    encoders = setup.text_encoders_of(pipe)
    encode = setup.make_encoder(pipe, family, device)
    for te in encoders:
        _place(te, device, wdtype)
    text_cache = None
    if not config.network.train_text_encoder:
        with acc.main_process_first():
            text_cache = TextCache(cache_root, encoders, encode, extra=str(wdtype))
            data = opened.data
            captions = (
                [i.caption for i in data.items + data.validation]
                + ["", config.sample.negative]
                + config.sample_prompts()
            )
            setup.fill_text_cache(text_cache, captions)
    fixed_captions = text_cache is not None and not config.data.shuffle_tags
    if fixed_captions and engine(family).release_text_encoders:
        encoders = setup.release_text_encoders(pipe)
    if device.type != "cpu":  # the VAE (and frozen encoders without shuffling) wait on the CPU
        pipe.vae.to("cpu")
        if fixed_captions:
            for te in encoders:
                te.to("cpu")
    return encoders, encode, text_cache


def _attach_network(config: TrainConfig, family: Family, pipe: Any, encoders: list[torch.nn.Module]) -> Network:
    denoiser = engine(family).denoiser(pipe)
    net = attach(family, denoiser, encoders, config.network, config.seed)
    if config.gradient_checkpointing:
        denoiser.enable_gradient_checkpointing()
        for te in net.text_encoders:
            te.gradient_checkpointing_enable()
    denoiser.train()
    for te in net.text_encoders:
        te.train()
    return net


def _resume(session: TrainSession) -> None:
    """Network, optimizer, scaler and schedule as saved; the step, times and a dataset-change warning."""
    run_dir, acc = session.run_dir, session.accelerator
    info = runs.resume_into(run_dir, session.net, session.optimizer.optimizer, acc.scaler, session.lr_scheduler)
    session.start_step = session.saved_step = int(info["step"])
    session.elapsed_before = float(info.get("elapsed", 0.0))
    session.started_at = float(info.get("started_at", session.started_at))
    session.reporter.status(f"resuming {run_dir.path} at step {session.start_step}")
    session.val_losses = validation.history(run_dir, session.start_step)
    if session.ema is not None:
        runs.resume_ema(run_dir, session.ema, session.reporter.warn)
    changed = setup.dataset_change(runs.load_pictures(run_dir), setup.picture_keys(session.data, session.latents))
    if changed:
        session.reporter.warn(changed)


def _place(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    module.to(device)
    if next(module.parameters()).dtype != dtype:
        module.to(dtype=dtype)
