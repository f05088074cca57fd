"""The tables of a TrainConfig that shape what is learned: the LoRA initialisation, the loss
(sd-scripts' options) and the EMA of the adapter weights.

::

    [network]
    init = "gaussian"            # peft's init_lora_weights: gaussian | kaiming | pissa | olora

    [loss]
    loss_type = "huber"          # l2 | huber | smooth_l1
    huber_schedule = "snr"       # constant | exponential | snr
    huber_c = 0.1
    debiased_estimation = false
    multires_noise_iterations = 0
    multires_noise_discount = 0.3
    min_timestep = 0
    max_timestep = 1000

    [ema]
    enabled = true
    decay = 0.999

The loss formulas are kohya sd-scripts' (``library/train_util.py`` ``conditional_loss`` and
``get_huber_threshold_if_needed``, ``library/custom_train_functions.py``
``apply_debiased_estimation`` and ``pyramid_noise_like``), so settings carry over.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from app.core.config_section import _check, _Section

NUM_TRAIN_TIMESTEPS = 1000  # every SD 1.x / 2.x / SDXL noise schedule


class LoraInit(str, Enum):
    """How the LoRA matrices start (peft's ``init_lora_weights``); B starts at zero for the first
    two, so step 0 is the base model; pissa and olora start from the base weights' own directions."""

    GAUSSIAN = "gaussian"  # A ~ N(0, 1/rank), B = 0: diffusers' training scripts
    KAIMING = "kaiming"  # A kaiming-uniform, B = 0: peft's default
    PISSA = "pissa"  # A, B from the SVD of W (the residual stays in the base)
    OLORA = "olora"  # A, B from the QR of W


class LossType(str, Enum):
    L2 = "l2"
    HUBER = "huber"  # pseudo-Huber: quadratic below huber_c, linear above it
    SMOOTH_L1 = "smooth_l1"  # the same curve without the factor huber_c


class HuberSchedule(str, Enum):
    CONSTANT = "constant"  # huber_c at every timestep
    EXPONENTIAL = "exponential"  # 1 at t = 0 down to huber_c at the last timestep
    SNR = "snr"  # from the noise level: near 1 for clean pictures, huber_c for pure noise


@dataclass
class LossOptions(_Section):
    loss_type: LossType = LossType.L2
    huber_schedule: HuberSchedule = HuberSchedule.SNR
    huber_c: float = 0.1
    debiased_estimation: bool = False  # weight each timestep by 1/sqrt(SNR) (1/(SNR+1) for v-prediction)
    multires_noise_iterations: int = 0  # 0: off; 6-10 as in sd-scripts
    multires_noise_discount: float = 0.3
    min_timestep: int = 0  # timesteps are drawn from min_timestep ... max_timestep - 1
    max_timestep: int = NUM_TRAIN_TIMESTEPS

    def validate(self, prefix: str = "") -> None:
        _check(0.0 < self.huber_c <= 1.0, prefix, f"huber_c = {self.huber_c} must be more than 0 and at most 1")
        _check(
            0 <= self.multires_noise_iterations <= 20,
            prefix,
            f"multires_noise_iterations = {self.multires_noise_iterations} must be between 0 and 20",
        )
        _check(
            0.0 < self.multires_noise_discount <= 1.0,
            prefix,
            f"multires_noise_discount = {self.multires_noise_discount} must be more than 0 and at most 1",
        )
        _check(
            0 <= self.min_timestep < self.max_timestep <= NUM_TRAIN_TIMESTEPS,
            prefix,
            f"min_timestep = {self.min_timestep} and max_timestep = {self.max_timestep} must satisfy "
            f"0 <= min_timestep < max_timestep <= {NUM_TRAIN_TIMESTEPS}",
        )


@dataclass
class EmaOptions(_Section):
    enabled: bool = False
    decay: float = 0.999  # each step: ema = decay * ema + (1 - decay) * weights
    on_cpu: bool = True  # keep the average in CPU memory (no GPU memory; a copy per step)
    samples: bool = False  # render the sample pictures with the averaged weights

    def validate(self, prefix: str = "") -> None:
        _check(0.0 < self.decay < 1.0, prefix, f"decay = {self.decay} must be between 0 and 1 (both excluded)")


__all__ = ["EmaOptions", "HuberSchedule", "LoraInit", "LossOptions", "LossType", "NUM_TRAIN_TIMESTEPS"]
