"""The training steps of a built :class:`~app.engine.training.session.TrainSession`, and what they save.

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
import random
import time

import torch

from app.core.events import ArtifactKind, ArtifactSaved, ImageReady, Phase, Progress
from app.core.files import SaveError
from app.engine import lora_files
from app.engine.families import engine
from app.engine.training import run as runs
from app.engine.training import setup
from app.engine.training.data import TrainError, mix_seed, vary_caption
from app.engine.training.objective import objective, scaled, time_ids
from app.engine.training.samples import render_samples
from app.engine.training.session import TrainResult, TrainSession

log = logging.getLogger(__name__)


def loop(session: TrainSession) -> TrainResult:
    """Train from ``session.start_step`` to the configured steps (or a stop); save and sample on the way."""
    config, run_dir, reporter = session.config, session.run_dir, session.reporter
    result = TrainResult(status="done", run_dir=run_dir.path, step=session.start_step, skipped=session.data.skipped)
    if session.start_step >= config.steps:
        reporter.status(f"the run already reached step {session.start_step}; raise steps to train further")
        result.final = run_dir.final_path if run_dir.final_path.is_file() else None
        return result
    step_log = (
        runs.StepLog(run_dir.log_path, resume_step=session.start_step) if session.accelerator.is_main_process else None
    )
    if step_log is not None:
        step_log.note_skipped(session.data.skipped)
    params = session.net.parameters()
    clock = _StepClock(session.start_step, session.elapsed_before)
    try:
        step = session.start_step
        while step < config.steps:
            # 1. One optimizer step: its micro-batches, the gradients averaged, clipped, applied.
            loss = _optimizer_step(session, step, params)
            step += 1
            result.losses[step] = loss
            result.step = step
            # 2. The step's time, log line and progress.
            per_step, elapsed = clock.lap(step)
            lr = session.lr_scheduler.get_last_lr()[0]
            if step_log is not None:
                step_log.write(
                    {"step": step, "loss": loss, "lr": lr, "time": round(elapsed, 3), "epoch": _epoch(session, step)}
                )
            reporter.emit(
                Progress(
                    step=step,
                    total=config.steps,
                    phase=Phase.TRAINING,
                    loss=loss,
                    lr=lr,
                    eta_s=round(per_step * (config.steps - step), 1),
                )
            )
            # 3. A checkpoint when it is due, asked for, the last step, or the run stops.
            stop = reporter.stop_requested()
            last = step == config.steps
            asked = reporter.take_requests()
            if (
                last
                or stop
                or "checkpoint" in asked
                or (config.output.save_every and step % config.output.save_every == 0)
            ):
                _save(session, step, final=last, result=result, elapsed=elapsed)
            # 4. Sample pictures when they are due or asked for.
            if config.sample.prompts and (
                "sample" in asked or (config.sample.every and (last or step % config.sample.every == 0))
            ):
                _samples(session, step)
            elif "sample" in asked:
                reporter.status("no sample prompts in this run's [sample] settings; nothing to render")
            # 5. A stop ends the run here; it resumes from the checkpoint just saved.
            if stop and not last:
                result.status = "cancelled"
                reporter.status(f"stopped at step {step}; resume with --resume {run_dir.path}")
                break
    except SaveError as exc:  # the disk filled or became read-only: say what is still whole
        raise runs.save_failure(exc, session.saved_step, session.save_need) from None
    finally:
        if step_log is not None:
            step_log.close()
    return result


class _StepClock:
    """Seconds per step (the first step warms up: timed from the second on) and the run's training time."""

    def __init__(self, start_step: int, elapsed_before: float) -> None:
        self.start_step, self.elapsed_before = start_step, elapsed_before
        self.loop_start = self.timer_start = self.last = time.perf_counter()
        self.timed_steps = 0

    def lap(self, step: int) -> tuple[float, float]:
        now = time.perf_counter()
        if step == self.start_step + 1:
            self.timer_start, per_step = now, now - self.last
        else:
            self.timed_steps += 1
            per_step = (now - self.timer_start) / self.timed_steps
        self.last = now
        return per_step, self.elapsed_before + (now - self.loop_start)


def _epoch(session: TrainSession, step: int) -> int:
    """0-based epoch of the last micro-batch of ``step`` (1-based)."""
    used = step * session.config.gradient_accumulation * session.accelerator.num_processes
    return (used - 1) // session.schedule.batches_per_epoch


def _optimizer_step(session: TrainSession, step: int, params: list[torch.nn.Parameter]) -> float:
    config, acc = session.config, session.accelerator
    accum = config.gradient_accumulation
    total = 0.0
    for micro in range(accum):
        index = (step * accum + micro) * acc.num_processes + acc.process_index
        torch.manual_seed(mix_seed(config.seed, "dropout", index))  # LoRA dropout
        with acc.autocast():
            loss = _batch_loss(session, index)
        acc.backward(loss / accum)
        total += loss.detach().float().item() / accum
    if acc.num_processes > 1:
        grads = [p.grad for p in params if p.grad is not None]
        flat = acc.reduce(torch.cat([g.reshape(-1) for g in grads]), reduction="mean")
        offset = 0
        for g in grads:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()
        total = acc.reduce(torch.tensor([total], device=acc.device), reduction="mean").item()
    if config.optimizer.max_grad_norm > 0:
        acc.clip_grad_norm_(params, config.optimizer.max_grad_norm)
    session.optimizer.step()
    session.lr_scheduler.step()
    session.optimizer.zero_grad(set_to_none=True)
    if not math.isfinite(total):
        raise TrainError(
            f"the loss became {total} at step {step + 1}; lower the learning rate "
            'or use mixed_precision = "bf16" / "fp32"'
        )
    return total


def _batch_loss(session: TrainSession, index: int) -> torch.Tensor:
    """The weighted loss of micro-batch ``index``: its pictures, flips, caption variations and
    latent samples drawn from generators seeded by ``index``."""
    config, data = session.config, session.data
    opts = config.data
    epoch, entries = session.schedule.batch(index)
    rng = random.Random(mix_seed(config.seed, "sample", index))
    gen = torch.Generator("cpu").manual_seed(mix_seed(config.seed, "noise", index))
    means, stds, captions, weights, ids = [], [], [], [], []
    for entry in entries:
        item = data.items[entry.item]
        flip = opts.flip and rng.random() < 0.5
        mean, std = session.latents.load(item.path, item.bucket, flip)
        means.append(mean)
        stds.append(std)
        captions.append(
            vary_caption(
                item.caption,
                rng,
                dropout=opts.caption_dropout,
                shuffle=opts.shuffle_tags,
                keep=opts.keep_tags,
                separator=opts.separator,
            )
        )
        weights.append(entry.weight)
        ids.append(time_ids(item))
    mean, std = torch.stack(means), torch.stack(stds)
    latents = scaled(mean + std * torch.randn(mean.shape, generator=gen), session.pipe.vae.config)
    loss = objective(session, latents, captions, ids, gen, noise_offset=config.noise_offset)
    return (loss * torch.tensor(weights, device=session.device)).mean()


def _save(session: TrainSession, step: int, *, final: bool, result: TrainResult, elapsed: float) -> None:
    acc, config, run_dir = session.accelerator, session.config, session.run_dir
    acc.wait_for_everyone()
    if acc.is_main_process:
        epoch = _epoch(session, step) + 1
        info = {
            "step": step,
            "epoch": epoch,
            "elapsed": elapsed,
            "started_at": session.started_at,
            "seed": config.seed,
            "processes": acc.num_processes,
            "network": config.network.to_dict(),
        }
        opt_state = {
            "optimizer": session.optimizer.optimizer.state_dict(),
            "scaler": acc.scaler.state_dict() if acc.scaler is not None else None,
        }
        path = run_dir.final_path if final else run_dir.checkpoint_path(step)
        tensors = session.net.kohya_tensors()
        adapter = setup.adapter_info(
            config, session.family, session.noise_scheduler, session.data, session.started_at, step, epoch
        )
        metadata = lora_files.build_metadata(adapter)
        metadata["modelspec.architecture"] = engine(session.family).adapter_architecture(
            session.net.unet, adapter.v_prediction
        )
        lora_files.save_kohya(path, tensors, metadata)
        # The state after the checkpoint: an interrupted checkpoint write leaves the previous
        # state, and a resume then redoes the step and writes the same file again.
        runs.save_state(
            run_dir,
            session.net.state(),
            opt_state,
            session.lr_scheduler.state_dict(),
            info,
            pictures=setup.picture_keys(session.data, session.latents),
        )
        session.saved_step = step
        result.checkpoints.append(path)
        if final:
            result.final = path
            if config.output.diffusers_copy:
                _diffusers_copy(session)
        for gone in runs.prune_checkpoints(run_dir, config.output.keep_last):
            log.info("removed old checkpoint %s", gone)
        session.reporter.emit(
            ArtifactSaved(path=str(path), kind=ArtifactKind.ADAPTER if final else ArtifactKind.CHECKPOINT, step=step)
        )
    acc.wait_for_everyone()


def _diffusers_copy(session: TrainSession) -> None:
    from peft import get_peft_model_state_dict

    net = session.net
    lora_files.save_diffusers_copy(
        session.run_dir.path / "diffusers",
        session.family,
        get_peft_model_state_dict(net.unet),
        net.unet_config.to_dict(),
        [get_peft_model_state_dict(te) for te in net.text_encoders],
        [c.to_dict() for c in net.text_configs],
    )


def _samples(session: TrainSession, step: int) -> None:
    acc, device = session.accelerator, session.device
    acc.wait_for_everyone()
    if acc.is_main_process:
        pipe = session.pipe
        moved = []
        if device.type != "cpu":
            for m in [pipe.vae] + setup.text_encoders_of(pipe):
                if m.device != device:
                    m.to(device)
                    moved.append(m)
        try:
            paths_ = [session.run_dir.sample_path(step, i) for i in range(len(session.config.sample.prompts))]
            autocast = acc.autocast if acc.mixed_precision != "no" else None
            for path, meta in render_samples(
                pipe,
                session.config,
                step,
                paths_,
                device=device,
                family=session.family,
                autocast=autocast,
                text_cache=session.text_cache,
            ):
                session.reporter.emit(ImageReady(path=str(path), step=step, meta=meta))
        finally:
            for m in moved:
                m.to("cpu")
    acc.wait_for_everyone()
