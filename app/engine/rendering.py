"""Renderer: keeps one loaded pipeline and renders pictures from GenerateRequests.

The worker and ``loraloom generate`` both use this class, so the GUI and the CLI make
the same picture from the same settings. The loaded model is kept between renders:
a second render with the same base does not reload anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from app import __version__
from app.core import families, paths
from app.core.configs import GenerateRequest, ModelSpec, Scheduler
from app.core.errors import ErrorKind
from app.core.files import replace_durably, saving, temp_path_beside
from app.core.pngmeta import PARAMETERS_KEY, format_parameters
from app.engine.block_mix import StepSwitches
from app.engine.families import engine
from app.engine.file_tensors import FileChanged
from app.engine.models import LoadedModel, check_source, load_model
from app.engine.patching import AdapterMixer, MixReport

log = logging.getLogger(__name__)

# (step, total, eta_seconds) after each sampling step.
StepCallback = Callable[[int, int, float], None]


class RenderCancelled(Exception):
    """The caller asked to stop; raised between sampling steps."""


class RenderFailed(Exception):
    """The render went wrong in a way the user can act on; the message says what and where."""

    def __init__(self, message: str, kind: ErrorKind) -> None:
        super().__init__(message)
        self.kind = kind


def _nan_failure(step: int, mix: MixReport, dtype: str) -> RenderFailed:
    """A non-finite latent would decode to an all-black picture reported as done; say who is likely to blame."""
    names = [a["name"] for a in mix.applied if a.get("weight") or a.get("te_weight")]
    if names:
        return RenderFailed(
            f"the picture became NaN at step {step} (adapter {' or '.join(names)}?); lower its weight or leave it out",
            ErrorKind.INCOMPATIBLE_ADAPTER,
        )
    return RenderFailed(
        f"the picture became NaN at step {step} (the base model in {dtype}?); try another dtype", ErrorKind.BAD_INPUT
    )


@dataclass
class RenderResult:
    path: Path
    seed: int
    meta: dict[str, Any]
    seconds: float
    mix: MixReport | None = None  # what the adapter stack did (refused files, warnings)


def _scheduler_for(choice: Scheduler, config: dict[str, Any], flow_matching: bool = False):
    import diffusers

    config = dict(config)
    if flow_matching:
        return _flow_scheduler_for(choice, config)
    if choice is Scheduler.EULER:
        return diffusers.EulerDiscreteScheduler.from_config(config)
    if choice is Scheduler.EULER_A:
        return diffusers.EulerAncestralDiscreteScheduler.from_config(config)
    if choice is Scheduler.DPMPP_2M_KARRAS:
        return diffusers.DPMSolverMultistepScheduler.from_config(
            config, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
        )
    if choice is Scheduler.DDIM:
        return diffusers.DDIMScheduler.from_config(config)
    if choice is Scheduler.UNIPC:
        return diffusers.UniPCMultistepScheduler.from_config(config)
    raise ValueError(f"unknown scheduler {choice!r}")


def _flow_scheduler_for(choice: Scheduler, config: dict[str, Any]):
    """The flow-matching form of a sampler (the family table lists which ones exist): the
    model's own shift settings (Flux: resolution-dependent) are kept."""
    import diffusers

    if choice is Scheduler.EULER:
        return diffusers.FlowMatchEulerDiscreteScheduler.from_config(config, stochastic_sampling=False)
    if choice is Scheduler.EULER_A:  # ancestral = fresh noise each step, as Forge's "Euler a" on Flux
        return diffusers.FlowMatchEulerDiscreteScheduler.from_config(config, stochastic_sampling=True)
    if choice is Scheduler.UNIPC:
        return diffusers.UniPCMultistepScheduler.from_config(
            config, prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=config.get("shift", 1.0)
        )
    raise ValueError(f"no flow-matching form of the {choice.value} sampler")


class Renderer:
    def __init__(self) -> None:
        self.loaded: LoadedModel | None = None
        self._key: tuple[str, str, str] | None = None
        self._base_scheduler_config: dict[str, Any] | None = None
        self.mixer: AdapterMixer | None = None  # adapters patched into the held pipeline
        self.switches = 0  # start/stop re-patches during the last render

    # ------------------------------------------------------------ model cache
    def ensure_model(self, spec: ModelSpec) -> LoadedModel:
        """Load ``spec`` unless it is what we already hold."""
        key = (spec.base.strip(), spec.device.value, spec.dtype.value)
        if self.loaded is not None and self._key == key:
            return self.loaded
        check_source(spec.base)  # a bad path must not drop the model we hold
        self.unload()
        self.loaded = load_model(spec)
        self._key = key
        self._base_scheduler_config = dict(self.loaded.pipe.scheduler.config)
        self.mixer = AdapterMixer(self.loaded.pipe, self.loaded.family, base=self.loaded.source)
        return self.loaded

    def unload(self) -> None:
        if self.loaded is None:
            return
        self.loaded = None
        self._key = None
        self.mixer = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    # ------------------------------------------------------------ adapters
    def set_adapters(self, entries, paused=()) -> MixReport:
        """Patch the held pipeline to this adapter stack (only what changed is recomputed);
        the UNet part of the ``paused`` paths is off (outside their start/stop steps)."""
        if self.mixer is None:
            raise RuntimeError("no model is loaded")
        try:
            return self.mixer.set_mix(entries, paused)
        except FileChanged as exc:
            self.unload()  # its weights cannot be put back to W0 any more: the next render loads it anew
            raise RenderFailed(str(exc), ErrorKind.BAD_INPUT) from None

    # ------------------------------------------------------------ render
    def render(
        self,
        request: GenerateRequest,
        *,
        out_path: Path | None = None,
        on_step: StepCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> RenderResult:
        model = self.ensure_model(request.model_spec())
        pipe = model.pipe
        family = families.spec(model.family)
        if problem := family.scheduler_problem(request.scheduler.value):
            raise RenderFailed(problem, ErrorKind.BAD_INPUT)
        entries = request.adapter_entries()
        switches = StepSwitches.plan(entries, request.steps)
        mix = self.set_adapters(entries, switches.paused_at(0))
        self.switches = 0
        assert self._base_scheduler_config is not None
        pipe.scheduler = _scheduler_for(request.scheduler, self._base_scheduler_config, family.flow_matching)
        # A distilled model has no guidance input: the picture says what it really got.
        guidance = family.render_defaults(distilled=True)[1] if model.distilled else request.guidance

        seed = request.seed if request.seed >= 0 else int(torch.randint(0, 2**31 - 1, (1,)).item())
        # CPU generator: the same seed gives the same picture on every device.
        generator = torch.Generator("cpu").manual_seed(seed)
        total = request.steps
        started = time.perf_counter()

        def step_end(_pipe, step_index: int, _timestep, kwargs):
            done = step_index + 1
            latents = kwargs.get("latents")
            if latents is not None and not bool(torch.isfinite(latents).all()):
                raise _nan_failure(done, mix, str(model.dtype).removeprefix("torch."))
            if switches.switches_after(done):  # an adapter's start or stop: one patch, then none per step
                self.set_adapters(entries, switches.paused_at(done))
                self.switches += 1
            elapsed = time.perf_counter() - started
            if on_step is not None:
                on_step(done, total, elapsed / done * (total - done))
            if should_cancel is not None and should_cancel():
                raise RenderCancelled()
            return kwargs

        if should_cancel is not None and should_cancel():
            raise RenderCancelled()
        with torch.inference_mode():
            result = pipe(
                prompt=request.prompt,
                num_inference_steps=request.steps,
                **engine(model.family).guidance_kwargs(guidance),
                width=request.width,
                height=request.height,
                generator=generator,
                callback_on_step_end=step_end,
                **engine(model.family).call_kwargs(pipe, request.negative),
            )
        image: Image.Image = result.images[0]
        seconds = time.perf_counter() - started

        meta = _picture_meta(request, model, family, seed, guidance, mix)
        path = out_path or default_output_path(request, seed)
        save_png(image, path, meta)
        log.info("rendered %s in %.2f s", path, seconds)
        return RenderResult(path=path, seed=seed, meta=meta, seconds=seconds, mix=mix)


def _picture_meta(request: GenerateRequest, model: LoadedModel, family, seed: int, guidance: float, mix) -> dict:
    """What the PNG's parameters say about a render."""
    meta = {
        "prompt": request.prompt,
        "negative": "" if family.guidance_distilled else request.negative,  # Flux takes none
        "seed": seed,
        "steps": request.steps,
        "guidance": guidance,
        "width": request.width,
        "height": request.height,
        "scheduler": request.scheduler.value,
        "base": model.source,
        "model": Path(model.source).stem if Path(model.source).exists() else model.source,
        "family": model.family.value,
        "version": f"LoRA Loom {__version__}",
        "adapters": mix.applied,
    }
    if family.guidance_distilled and not model.distilled:
        meta["distilled_guidance"] = guidance
    if mix.refused:
        meta["adapter_errors"] = mix.refused
    return meta


def default_output_path(request: GenerateRequest, seed: int) -> Path:
    folder = Path(request.output_dir) if request.output_dir else paths.outputs_dir()
    folder = folder / datetime.now().strftime("%Y-%m-%d")
    stamp = datetime.now().strftime("%H%M%S-%f")
    return folder / f"{stamp}-{seed}.png"


def save_png(image: Image.Image, path: Path, meta: dict[str, Any]) -> None:
    """Write the PNG atomically with the A1111 ``parameters`` chunk."""
    info = PngInfo()
    info.add_text(PARAMETERS_KEY, format_parameters(meta))
    tmp = temp_path_beside(path)
    try:
        with saving(path):  # a full disk or read-only folder: SaveError naming the picture
            image.save(tmp, format="PNG", pnginfo=info)
            replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
