"""The training loop on accelerate: cached latents/text in, UNet(+TE) LoRA forward/backward out.

Each optimizer step is a pure function of (seed, step, saved state): the batch, caption
variations, flips, latent samples, noise, timesteps and LoRA dropout all come from
generators seeded by the step number, so a resumed run repeats an uninterrupted run's
losses exactly (on the same device). Multi-process (``accelerate launch``): every
process takes its own micro-batches, gradients are averaged before the step, and only
the main process writes files.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from app.core import paths
from app.core.configs import DtypePref, ModelSpec
from app.core.files import SaveError
from app.core.train_config import Prediction, TrainConfig
from app.engine import lora_files
from app.engine.families import engine
from app.engine.models import load_model
from app.engine.training import run as runs
from app.engine.training import setup
from app.engine.training.buckets import plan_crop
from app.engine.training.caches import LatentCache, TextCache
from app.engine.training.data import Schedule, TrainData, TrainError, mix_seed, vary_caption
from app.engine.training.network import attach
from app.engine.training.samples import render_samples

log = logging.getLogger(__name__)

Event = dict[str, Any]  # {"kind": "progress" | "sample" | "checkpoint" | "status" | "started", ...}


@dataclass
class TrainResult:
    status: str  # "done" | "cancelled"
    run_dir: Path | None
    step: int
    final: Path | None = None
    checkpoints: list[Path] = field(default_factory=list)
    losses: dict[int, float] = field(default_factory=dict)  # step -> loss, this session
    skipped: list[str] = field(default_factory=list)


class Trainer:
    def __init__(self, config: TrainConfig | None = None, *, resume: str | Path | None = None,
                 on_event: Callable[[Event], None] | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 take_requests: Callable[[], list[str]] | None = None) -> None:
        if config is None and resume is None:
            raise TrainError("give a config or a run folder to resume")
        self.config = config
        self.resume = resume
        self._on_event = on_event or (lambda event: None)
        self._should_stop = should_stop or (lambda: False)
        # Polled once per step (single process): "checkpoint" / "sample" asked for now (the GUI's buttons).
        self._take_requests = take_requests or (lambda: [])
        self.accelerator: Any = None
        self.saved_step: int | None = None  # the step of the last whole checkpoint and resume state
        self.save_need = 0  # bytes one save writes (for "free N GB")

    # ------------------------------------------------------------ helpers
    def emit(self, kind: str, **fields: Any) -> None:
        if self.accelerator is None or self.accelerator.is_main_process:
            self._on_event({"kind": kind, **fields})

    def status(self, message: str) -> None:
        log.info("%s", message)
        self.emit("status", message=message)

    def warn(self, message: str) -> None:
        log.info("%s", message)  # info: the CLI and the GUI show the event, a warning would print twice
        self.emit("warning", message=message)

    def stop_requested(self) -> bool:
        flag = bool(self._should_stop())
        if self.accelerator is not None and self.accelerator.num_processes > 1:
            t = torch.tensor([1.0 if flag else 0.0], device=self.accelerator.device)
            flag = bool(self.accelerator.reduce(t, reduction="sum").item() > 0)
        return flag

    # ------------------------------------------------------------ run
    def run(self) -> TrainResult:
        from accelerate import Accelerator

        config = self.config
        if self.resume is not None:
            run_dir, config = runs.open_run_dir(self.resume, config)
        assert config is not None
        self.config = config
        _source, data = setup.preflight(config, self._should_stop)
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            # accelerate keeps its state per process; a long-lived worker may train twice with
            # other precision or device settings, which accelerate refuses unless it starts afresh.
            from accelerate.state import AcceleratorState

            AcceleratorState._reset_state(reset_partial_state=True)
        acc = self.accelerator = Accelerator(**setup.accelerate_settings(config))
        if self.resume is None:
            run_dir = runs.new_run_dir(config) if acc.is_main_process else None
            if acc.num_processes > 1:
                from accelerate.utils import broadcast_object_list

                run_dir = broadcast_object_list([run_dir])[0]
        self.run_dir = run_dir
        self.emit("started", run_dir=str(run_dir.path), skipped=data.skipped)
        for line in data.skipped:
            self.warn(f"skipped {line}")
        for line in data.notes:
            self.warn(line)
        try:
            return self._start(data)
        except BaseException:
            if self.resume is None and acc.is_main_process and runs.remove_if_unused(run_dir):
                log.info("removed %s: the run failed before saving anything", run_dir.path)
            raise

    def _start(self, data: TrainData) -> TrainResult:
        """Model, caches, network and optimizer (and the saved state of a resume), then the loop."""
        config, acc, run_dir = self.config, self.accelerator, self.run_dir
        self.status(f"loading {config.base}")
        loaded = load_model(ModelSpec(base=config.base, device="cpu", dtype=DtypePref.FP32))
        self.family, pipe = loaded.family, loaded.pipe
        self.pipe = pipe
        device, wdtype = acc.device, setup.weight_dtype(acc.mixed_precision)
        self.device = device
        scheduler = self._noise_scheduler(pipe)
        cache_root = Path(config.cache_dir).expanduser() if config.cache_dir else paths.cache_dir() / "train"

        # Caches: the main process fills them, the others then find every entry on disk.
        with acc.main_process_first():
            pipe.vae.to(device)  # loaded in fp32, and kept so (fp16 VAEs overflow)
            self.latents = LatentCache(cache_root, pipe.vae)
            done, unreadable = setup.fill_latent_cache(
                self.latents, data, config.data.flip, device,
                lambda i, n: self.emit("progress", step=0, total=config.steps, eta_s=None,
                                       message=f"caching latents {i}/{n}"),
                self._should_stop)
        if unreadable:
            data = setup.drop_unreadable(data, unreadable)
            for line in unreadable.values():
                self.warn(f"skipped {line}")
        if not done:
            return TrainResult(status="cancelled", run_dir=run_dir.path, step=0, skipped=data.skipped)
        encoders = setup.text_encoders_of(pipe)
        self.encode = setup.make_encoder(pipe, self.family, device)
        for te in encoders:
            _place(te, device, wdtype)
        self.text_cache = None
        if not config.network.train_text_encoder:
            with acc.main_process_first():
                self.text_cache = TextCache(cache_root, encoders, self.encode, extra=str(wdtype))
                setup.fill_text_cache(self.text_cache, [i.caption for i in data.items] + [""])
        if device.type != "cpu":  # the VAE (and frozen encoders without shuffling) wait on the CPU
            pipe.vae.to("cpu")
            if self.text_cache is not None and not config.data.shuffle_tags:
                for te in encoders:
                    te.to("cpu")

        _place(pipe.unet, device, wdtype)
        self.unet_dtype = wdtype  # diffusers' .dtype walks every module: too slow to ask per step
        net = self.net = attach(self.family, pipe.unet, encoders, config.network, config.seed)
        if config.gradient_checkpointing:
            pipe.unet.enable_gradient_checkpointing()
            for te in net.text_encoders:
                te.gradient_checkpointing_enable()
        pipe.unet.train()
        for te in net.text_encoders:
            te.train()
        adapter_bytes = sum(p.numel() * 4 for p in net.parameters())
        self.save_need = 4 * adapter_bytes  # one checkpoint and one resume state (adapter, two moments)
        warning = runs.space_warning(run_dir, cache_root, runs.space_needed(config, adapter_bytes, len(data.items)))
        if warning is not None:
            self.warn(warning)
        optimizer = setup.make_optimizer(config, net.unet_parameters(), net.text_parameters())
        lr_scheduler = setup.make_lr_scheduler(config, optimizer)
        optimizer = acc.prepare(optimizer)

        start_step, elapsed_before, started_at = 0, 0.0, time.time()
        if self.resume is not None:
            info = runs.resume_into(run_dir, net, optimizer.optimizer, acc.scaler, lr_scheduler)
            start_step = self.saved_step = int(info["step"])
            elapsed_before = float(info.get("elapsed", 0.0))
            started_at = float(info.get("started_at", started_at))
            self.status(f"resuming {run_dir.path} at step {start_step}")
            changed = setup.dataset_change(runs.load_pictures(run_dir), setup.picture_keys(data, self.latents))
            if changed:
                self.warn(changed)
        schedule = Schedule(data, config.data.batch_size, config.seed, config.data.reg_weight)
        self.data, self.schedule, self.scheduler = data, schedule, scheduler
        self.optimizer, self.lr_scheduler, self.started_at = optimizer, lr_scheduler, started_at
        return self._loop(start_step, elapsed_before)

    def _noise_scheduler(self, pipe: Any):
        from diffusers import DDPMScheduler

        sched = DDPMScheduler.from_config(pipe.scheduler.config)
        if self.config.prediction is not Prediction.AUTO:
            sched.register_to_config(prediction_type=self.config.prediction.value)
        return sched

    # ------------------------------------------------------------ loop
    def _loop(self, start_step: int, elapsed_before: float) -> TrainResult:
        config, run_dir = self.config, self.run_dir
        result = TrainResult(status="done", run_dir=run_dir.path, step=start_step, skipped=self.data.skipped)
        if start_step >= config.steps:
            self.status(f"the run already reached step {start_step}; raise steps to train further")
            result.final = run_dir.final_path if run_dir.final_path.is_file() else None
            return result
        try:
            return self._steps(start_step, elapsed_before, result)
        except SaveError as exc:  # the disk filled or became read-only: say what is still whole
            raise runs.save_failure(exc, self.saved_step, self.save_need) from None

    def _steps(self, start_step: int, elapsed_before: float, result: TrainResult) -> TrainResult:
        config, acc, run_dir = self.config, self.accelerator, self.run_dir
        step_log = runs.StepLog(run_dir.log_path, resume_step=start_step) if acc.is_main_process else None
        if step_log is not None:
            step_log.note_skipped(self.data.skipped)
        params = self.net.parameters()
        loop_start = time.perf_counter()
        timer_start, timed_steps = loop_start, 0
        try:
            step = start_step
            while step < config.steps:
                t0 = time.perf_counter()
                loss = self._optimizer_step(step, params)
                step += 1
                lr = self.lr_scheduler.get_last_lr()[0]
                result.losses[step] = loss
                result.step = step
                now = time.perf_counter()
                if step == start_step + 1:  # the first step warms up; time from the second on
                    timer_start, per_step = now, now - t0
                else:
                    timed_steps += 1
                    per_step = (now - timer_start) / timed_steps
                elapsed = elapsed_before + (now - loop_start)
                if step_log is not None:
                    step_log.write({"step": step, "loss": loss, "lr": lr, "time": round(elapsed, 3),
                                    "epoch": self._epoch(step)})
                self.emit("progress", step=step, total=config.steps, loss=loss, lr=lr,
                          eta_s=round(per_step * (config.steps - step), 1))
                stop = self.stop_requested()
                last = step == config.steps
                asked = self._take_requests()
                if last or stop or "checkpoint" in asked or (
                        config.output.save_every and step % config.output.save_every == 0):
                    self._save(step, final=last, result=result, elapsed=elapsed)
                if config.sample.prompts and ("sample" in asked or (
                        config.sample.every and (last or step % config.sample.every == 0))):
                    self._samples(step)
                elif "sample" in asked:
                    self.status("no sample prompts in this run's [sample] settings; nothing to render")
                if stop and not last:
                    result.status = "cancelled"
                    self.status(f"stopped at step {step}; resume with --resume {run_dir.path}")
                    break
        finally:
            if step_log is not None:
                step_log.close()
        return result

    def _epoch(self, step: int) -> int:
        """0-based epoch of the last micro-batch of ``step`` (1-based)."""
        used = step * self.config.gradient_accumulation * self.accelerator.num_processes
        return (used - 1) // self.schedule.batches_per_epoch

    def _optimizer_step(self, step: int, params: list[torch.nn.Parameter]) -> float:
        config, acc = self.config, self.accelerator
        accum = config.gradient_accumulation
        total = 0.0
        for micro in range(accum):
            index = (step * accum + micro) * acc.num_processes + acc.process_index
            torch.manual_seed(mix_seed(config.seed, "dropout", index))  # LoRA dropout
            with acc.autocast():
                loss = self._loss(index)
            acc.backward(loss / accum)
            total += loss.detach().float().item() / accum
        if acc.num_processes > 1:
            grads = [p.grad for p in params if p.grad is not None]
            flat = acc.reduce(torch.cat([g.reshape(-1) for g in grads]), reduction="mean")
            offset = 0
            for g in grads:
                g.copy_(flat[offset:offset + g.numel()].view_as(g))
                offset += g.numel()
            total = acc.reduce(torch.tensor([total], device=acc.device), reduction="mean").item()
        if config.optimizer.max_grad_norm > 0:
            acc.clip_grad_norm_(params, config.optimizer.max_grad_norm)
        self.optimizer.step()
        self.lr_scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if not math.isfinite(total):
            raise TrainError(f"the loss became {total} at step {step + 1}; lower the learning rate "
                             "or use mixed_precision = \"bf16\" / \"fp32\"")
        return total

    def _loss(self, index: int) -> torch.Tensor:
        config, data, device = self.config, self.data, self.device
        opts = config.data
        epoch, entries = self.schedule.batch(index)
        rng = random.Random(mix_seed(config.seed, "sample", index))
        gen = torch.Generator("cpu").manual_seed(mix_seed(config.seed, "noise", index))
        means, stds, captions, weights, time_ids = [], [], [], [], []
        for entry in entries:
            item = data.items[entry.item]
            flip = opts.flip and rng.random() < 0.5
            mean, std = self.latents.load(item.path, item.bucket, flip)
            means.append(mean)
            stds.append(std)
            captions.append(vary_caption(item.caption, rng, dropout=opts.caption_dropout,
                                         shuffle=opts.shuffle_tags, keep=opts.keep_tags, separator=opts.separator))
            weights.append(entry.weight)
            plan = plan_crop(item.size[0], item.size[1], item.bucket)
            time_ids.append([item.size[1], item.size[0], plan.top, plan.left, item.bucket[1], item.bucket[0]])
        mean, std = torch.stack(means), torch.stack(stds)
        vae_config = self.pipe.vae.config
        latents = mean + std * torch.randn(mean.shape, generator=gen)
        latents = (latents - (getattr(vae_config, "shift_factor", None) or 0.0)) * vae_config.scaling_factor
        noise = torch.randn(latents.shape, generator=gen)
        if config.noise_offset:
            noise = noise + config.noise_offset * torch.randn((latents.shape[0], latents.shape[1], 1, 1),
                                                              generator=gen)
        sched = self.scheduler
        timesteps = torch.randint(0, sched.config.num_train_timesteps, (latents.shape[0],), generator=gen)
        latents, noise, timesteps = latents.to(device), noise.to(device), timesteps.to(device)
        noisy = sched.add_noise(latents, noise, timesteps)
        if sched.config.prediction_type == "v_prediction":
            target = sched.get_velocity(latents, noise, timesteps)
        else:
            target = noise
        cond = self._condition(captions, time_ids)
        pred = self.net.unet(noisy.to(self.unet_dtype), timesteps, **cond).sample
        loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
        loss = loss * self._snr_weights(timesteps)
        return (loss * torch.tensor(weights, device=device)).mean()

    def _snr_weights(self, timesteps: torch.Tensor) -> torch.Tensor | float:
        """min-SNR-gamma loss weights (Hang et al. 2023); 1 when off."""
        gamma, sched = self.config.min_snr_gamma, self.scheduler
        if gamma <= 0:
            return 1.0
        from diffusers.training_utils import compute_snr

        snr = compute_snr(sched, timesteps)
        clipped = torch.clamp(snr, max=gamma)
        return clipped / (snr + 1) if sched.config.prediction_type == "v_prediction" else clipped / snr

    def _condition(self, captions: list[str], time_ids: list[list[int]]) -> dict[str, Any]:
        if self.text_cache is not None:
            found = self.text_cache.get_many(captions)
            out = {k: torch.stack([f[k] for f in found]).to(self.device) for k in found[0]}
        else:
            out = self.encode(captions)
        dtype = self.unet_dtype
        cond: dict[str, Any] = {"encoder_hidden_states": out["embeds"].to(dtype)}
        cond.update(engine(self.family).added_conditioning(out, time_ids, self.device, dtype))
        return cond

    def fixed_loss(self, seed: int = 0, timesteps: tuple[int, ...] = (999, 900, 750, 500, 250, 100)) -> float:
        """The training objective (min-SNR weighting included) over the training pictures at fixed
        noise and timesteps (latent means, plain captions, no dropout, no grad): a learning measure
        free of each step's random choices."""
        items = self.data.train_items
        unet = self.net.unet
        was_training = unet.training
        unet.eval()
        gen = torch.Generator("cpu").manual_seed(seed)
        total, count = 0.0, 0
        sched, vae_config = self.scheduler, self.pipe.vae.config
        try:
            with torch.no_grad(), self.accelerator.autocast():
                for item in items:
                    mean, _ = self.latents.load(item.path, item.bucket, False)
                    plan = plan_crop(item.size[0], item.size[1], item.bucket)
                    time_ids = [item.size[1], item.size[0], plan.top, plan.left, item.bucket[1], item.bucket[0]]
                    latents = ((mean - (getattr(vae_config, "shift_factor", None) or 0.0))
                               * vae_config.scaling_factor)[None].repeat(len(timesteps), 1, 1, 1)
                    noise = torch.randn(latents.shape, generator=gen)
                    t = torch.tensor(timesteps)
                    latents, noise, t = latents.to(self.device), noise.to(self.device), t.to(self.device)
                    noisy = sched.add_noise(latents, noise, t)
                    target = sched.get_velocity(latents, noise, t) if sched.config.prediction_type == "v_prediction" \
                        else noise
                    cond = self._condition([item.caption] * len(timesteps), [time_ids] * len(timesteps))
                    pred = unet(noisy.to(self.unet_dtype), t, **cond).sample
                    loss = F.mse_loss(pred.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
                    total += (loss * self._snr_weights(t)).mean().item()
                    count += 1
        finally:
            unet.train(was_training)
        return total / count

    # ------------------------------------------------------------ outputs
    def _save(self, step: int, *, final: bool, result: TrainResult, elapsed: float) -> None:
        acc, config, run_dir = self.accelerator, self.config, self.run_dir
        acc.wait_for_everyone()
        if acc.is_main_process:
            epoch = self._epoch(step) + 1
            info = {"step": step, "epoch": epoch, "elapsed": elapsed, "started_at": self.started_at,
                    "seed": config.seed, "processes": acc.num_processes, "network": config.network.to_dict()}
            opt_state = {"optimizer": self.optimizer.optimizer.state_dict(),
                         "scaler": acc.scaler.state_dict() if acc.scaler is not None else None}
            path = run_dir.final_path if final else run_dir.checkpoint_path(step)
            tensors = self.net.kohya_tensors()
            lora_files.save_kohya(path, tensors, lora_files.build_metadata(setup.adapter_info(
                config, self.family, self.scheduler, self.data, self.started_at, step, epoch)))
            # The state after the checkpoint: an interrupted checkpoint write leaves the previous
            # state, and a resume then redoes the step and writes the same file again.
            runs.save_state(run_dir, self.net.state(), opt_state, self.lr_scheduler.state_dict(), info,
                            pictures=setup.picture_keys(self.data, self.latents))
            self.saved_step = step
            result.checkpoints.append(path)
            if final:
                result.final = path
                if config.output.diffusers_copy:
                    self._diffusers_copy()
            for gone in runs.prune_checkpoints(run_dir, config.output.keep_last):
                log.info("removed old checkpoint %s", gone)
            self.emit("checkpoint", path=str(path), step=step, final=final)
        acc.wait_for_everyone()

    def _diffusers_copy(self) -> None:
        from peft import get_peft_model_state_dict

        net = self.net
        lora_files.save_diffusers_copy(
            self.run_dir.path / "diffusers", self.family, get_peft_model_state_dict(net.unet),
            net.unet_config.to_dict(),
            [get_peft_model_state_dict(te) for te in net.text_encoders],
            [c.to_dict() for c in net.text_configs])

    def _samples(self, step: int) -> None:
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            pipe = self.pipe
            moved = []
            if self.device.type != "cpu":
                for m in [pipe.vae] + setup.text_encoders_of(pipe):
                    if m.device != self.device:
                        m.to(self.device)
                        moved.append(m)
            try:
                paths_ = [self.run_dir.sample_path(step, i) for i in range(len(self.config.sample.prompts))]
                autocast = acc.autocast if acc.mixed_precision != "no" else None
                for path, meta in render_samples(pipe, self.config, step, paths_, device=self.device,
                                                 autocast=autocast):
                    self.emit("sample", path=str(path), step=step, meta=meta)
            finally:
                for m in moved:
                    m.to("cpu")
        acc.wait_for_everyone()


def _place(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    module.to(device)
    if next(module.parameters()).dtype != dtype:
        module.to(dtype=dtype)


def train(config: TrainConfig | None = None, *, resume: str | Path | None = None,
          on_event: Callable[[Event], None] | None = None,
          should_stop: Callable[[], bool] | None = None,
          take_requests: Callable[[], list[str]] | None = None) -> TrainResult:
    """Run (or resume) a training run to the end or until ``should_stop()``; see :class:`Trainer`."""
    return Trainer(config, resume=resume, on_event=on_event, should_stop=should_stop,
                   take_requests=take_requests).run()
