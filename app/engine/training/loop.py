"""The training steps of a built :class:`~app.engine.training.session.TrainSession`, and what they save.

Each optimizer step is a pure function of (seed, step, saved state): the batch, caption
variations, flips, latent samples, noise, timesteps and LoRA dropout all come from
generators seeded by the step number, so a resumed run repeats an uninterrupted run's
losses exactly (on the same device). Multi-process (``accelerate launch``): every
process takes its own micro-batches, gradients are averaged before the step, and only
the main process writes files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from app.core import families
from app.core.events import ArtifactKind, ArtifactSaved, ImageReady, Phase, Progress
from app.core.files import SaveError
from app.core.train_requests import TryPrompt
from app.engine import lora_files
from app.engine.families import engine
from app.engine.training import run as runs
from app.engine.training import setup, validation
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
            if session.ema is not None:
                session.ema.update()
            step += 1
            result.losses[step] = loss
            result.step = step
            if not _after_step(session, step, loss, clock, step_log, result):
                break
    except SaveError as exc:  # the disk filled or became read-only: say what is still whole
        raise runs.save_failure(exc, session.saved_step, session.save_need) from None
    finally:
        if step_log is not None:
            step_log.close()
    result.val_losses = dict(session.val_losses)
    result.best = _best_file(session, result)
    return result


def _best_file(session: TrainSession, result: TrainResult) -> tuple[int, Path] | None:
    """The kept checkpoint (or final adapter) with the lowest validation loss; None without validation."""
    saved = dict(runs.checkpoint_steps(session.run_dir))
    if result.final is not None:
        saved[result.step] = result.final
    best = validation.best_checkpoint_step(session, list(saved))
    return None if best is None else (best, saved[best])


def _after_step(
    session: TrainSession, step: int, loss: float, clock: _StepClock, step_log: runs.StepLog | None, result: TrainResult
) -> bool:
    """Log, report, save, sample and try after ``step``; False when the run stops here."""
    config, reporter = session.config, session.reporter
    # 1. The step's time, the validation loss when due (and at every scheduled checkpoint, so the
    # best one is known), the log line and progress.
    per_step, elapsed = clock.lap(step)
    lr = session.lr_scheduler.get_last_lr()[0]
    last = step == config.steps
    scheduled = last or bool(config.output.save_every and step % config.output.save_every == 0)
    val = validation.validate(session, step) if validation.due(session, step, scheduled) else None
    if step_log is not None:
        record = {"step": step, "loss": loss, "lr": lr, "time": round(elapsed, 3), "epoch": _epoch(session, step)}
        step_log.write(record if val is None else {**record, "val_loss": val})
    eta = round(per_step * (config.steps - step), 1)
    reporter.emit(
        Progress(step=step, total=config.steps, phase=Phase.TRAINING, loss=loss, lr=lr, eta_s=eta, val_loss=val)
    )
    # 2. What is asked for now; 3. a checkpoint when it is due, asked for, the last step, or the run stops.
    stop = reporter.stop_requested()
    asked = reporter.take_requests()
    if scheduled or stop or "checkpoint" in asked:
        _save(session, step, final=last, result=result, elapsed=elapsed, stopped=stop and not last)
    # 4. Sample pictures when they are due or asked for; "Try a prompt" pictures, off the run's clock.
    if config.sample.prompts and (
        "sample" in asked or (config.sample.every and (last or step % config.sample.every == 0))
    ):
        _samples(session, step)
    elif "sample" in asked:
        reporter.status("no sample prompts in this run's [sample] settings; nothing to render")
    tries = [r for r in asked if isinstance(r, TryPrompt)]
    if tries:
        with clock.paused():
            _tries(session, step, tries)
    # 5. A stop ends the run here; it resumes from the checkpoint just saved.
    if stop and not last:
        result.status = "cancelled"
        reporter.status(f"stopped at step {step}; resume with --resume {session.run_dir.path}")
        return False
    return True


class _StepClock:
    """Seconds per step (the first step warms up: timed from the second on) and the run's training time."""

    def __init__(self, start_step: int, elapsed_before: float) -> None:
        self.start_step, self.elapsed_before = start_step, elapsed_before
        self.loop_start = self.timer_start = self.last = time.perf_counter()
        self.timed_steps = 0

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside counts neither in the step time (so not in the ETA) nor in the run's time."""
        began = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - began
            self.timer_start += spent
            self.loop_start += spent
            self.last += spent

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
    latents = scaled(mean + std * torch.randn(mean.shape, generator=gen), session.pipe.vae.config, session.family)
    loss = objective(session, latents, captions, ids, gen, noise_offset=config.noise_offset)
    return (loss * torch.tensor(weights, device=session.device)).mean()


def _save(
    session: TrainSession, step: int, *, final: bool, result: TrainResult, elapsed: float, stopped: bool = False
) -> None:
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
            # Stopped on request: the GUI then does not offer to resume it as an interrupted run.
            "stopped": stopped,
        }
        opt_state = {
            "optimizer": session.optimizer.optimizer.state_dict(),
            "scaler": acc.scaler.state_dict() if acc.scaler is not None else None,
        }
        path = run_dir.final_path if final else run_dir.checkpoint_path(step)
        _write_adapter(session, path, step, epoch)
        # The state after the checkpoint: an interrupted checkpoint write leaves the previous
        # state, and a resume then redoes the step and writes the same file again.
        runs.save_state(
            run_dir,
            session.net.state(),
            opt_state,
            session.lr_scheduler.state_dict(),
            info,
            pictures=setup.picture_keys(session.data, session.latents),
            ema=session.ema.state() if session.ema is not None else None,
        )
        session.saved_step = step
        result.checkpoints.append(path)
        if final:
            result.final = path
            if config.output.diffusers_copy:
                _diffusers_copy(session)
        best = validation.best_checkpoint_step(session, [s for s, _ in runs.checkpoint_steps(run_dir)])
        for gone in runs.prune_checkpoints(run_dir, config.output.keep_last, keep_step=best):
            log.info("removed old checkpoint %s", gone)
        val = session.val_losses.get(step)
        session.reporter.emit(
            ArtifactSaved(
                path=str(path),
                kind=ArtifactKind.ADAPTER if final else ArtifactKind.CHECKPOINT,
                step=step,
                details={} if val is None else {"val_loss": val},
            )
        )
    acc.wait_for_everyone()


def _write_adapter(session: TrainSession, path: Path, step: int, epoch: int) -> None:
    """The kohya file of the network at ``step``, with kohya's metadata for this run."""
    tensors = session.net.kohya_tensors()
    adapter = setup.adapter_info(
        session.config,
        session.family,
        session.noise_scheduler,
        session.data,
        session.started_at,
        step,
        epoch,
        epochs=_epoch(session, session.config.steps) + 1,
    )
    # The family's modelspec architecture (Flux: flux-1-dev/lora or flux-1-schnell/lora by its model).
    architecture = engine(session.family).adapter_architecture(session.net.unet, adapter.v_prediction)
    lora_files.save_kohya(path, tensors, _metadata(adapter, tensors, architecture))
    if session.ema is not None:  # the weight average beside it, in the same layout
        ema_info = dataclasses.replace(adapter, name=f"{adapter.name}-ema")
        with session.ema.applied():  # written inside: the tensors share the weights' memory
            ema_tensors = session.net.kohya_tensors()
            lora_files.save_kohya(session.run_dir.ema_path, ema_tensors, _metadata(ema_info, ema_tensors, architecture))


def _metadata(adapter: lora_files.AdapterInfo, tensors: dict[str, torch.Tensor], architecture: str) -> dict[str, str]:
    metadata = lora_files.build_metadata(adapter, tensors)
    metadata["modelspec.architecture"] = architecture
    return metadata


def _diffusers_copy(session: TrainSession) -> None:
    net = session.net
    (unet_state, unet_alphas), *texts = net.peft_states()
    configs = [net.unet_config.to_dict()] + [c.to_dict() for c in net.text_configs]
    if net.initial is not None:  # pissa / olora saved as a plain LoRA: every layer's own rank and alpha
        for config, (state, alphas) in zip(configs, [(unet_state, unet_alphas), *texts]):
            ranks = {k.split(".lora_A.")[0]: v.shape[0] for k, v in state.items() if ".lora_A." in k}
            config["rank_pattern"] = {re.escape(path): rank for path, rank in ranks.items()}
            config["alpha_pattern"] = {re.escape(path): alphas[path] for path in ranks}
            config["init_lora_weights"] = True
    lora_files.save_diffusers_copy(
        session.run_dir.path / "diffusers",
        session.family,
        unet_state,
        configs[0],
        [state for state, _ in texts],
        configs[1:],
    )


def _samples(session: TrainSession, step: int) -> None:
    config = session.config
    wanted = [(p, config.sample.negative, config.sample.seed + i) for i, p in enumerate(config.sample_prompts())]
    paths_ = [session.run_dir.sample_path(step, i) for i in range(len(wanted))]
    _render(session, step, wanted, paths_, from_average=session.ema is not None and config.ema.samples)


def _tries(session: TrainSession, step: int, tries: list[TryPrompt]) -> None:
    """ "Try a prompt" pictures with the adapter as it is after ``step`` (main process only: the
    GUI's requests reach a single-process run)."""
    config = session.config
    if getattr(session.pipe, "text_encoder", None) is None:  # released once every caption was cached
        session.reporter.status(
            f"Try a prompt needs the text encoders, which a {families.label(session.family)} run releases "
            "after caching its captions; the prompt was not rendered: use the sample prompts, or train the "
            "text encoder"
        )
        return
    wanted, paths_ = [], []
    index = 0
    for t in tries:
        prompt = t.prompt.replace("{trigger}", config.trigger.strip()).strip()
        wanted.append((prompt, t.negative or config.sample.negative, config.sample.seed if t.seed is None else t.seed))
        # The next free number: a resumed run redoes the steps after its last save, and an earlier
        # try at the same step is kept.
        while session.run_dir.try_path(step, index).exists():
            index += 1
        paths_.append(session.run_dir.try_path(step, index))
        index += 1
    _render(session, step, wanted, paths_, barrier=False)


def _render(
    session: TrainSession,
    step: int,
    wanted: list[tuple[str, str, int]],
    paths_: list,
    *,
    barrier: bool = True,
    from_average: bool = False,
) -> None:
    """Render (prompt, negative, seed) triples to ``paths_`` with the adapter as it is now (or its
    EMA when ``from_average``; a "Try a prompt" picture shows the weights as trained)."""
    acc, device = session.accelerator, session.device
    if barrier:
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
            autocast = acc.autocast if acc.mixed_precision != "no" else None
            with session.ema.applied() if from_average else contextlib.nullcontext():
                rendered = render_samples(
                    pipe,
                    session.config,
                    step,
                    paths_,
                    device=device,
                    family=session.family,
                    autocast=autocast,
                    wanted=wanted,
                    text_cache=session.text_cache,
                )
                for path, meta in rendered:
                    session.reporter.emit(ImageReady(path=str(path), step=step, meta=meta))
        finally:
            for m in moved:
                m.to("cpu")
    if barrier:
        acc.wait_for_everyone()
