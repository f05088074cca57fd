"""The [loss] options change the computed loss as kohya sd-scripts documents them.

Each expected value is written here from sd-scripts' definitions (library/train_util.py
``conditional_loss``, ``get_huber_threshold_if_needed``; library/custom_train_functions.py
``apply_debiased_estimation``, ``pyramid_noise_like``) on fixed tensors, and compared with what
the trainer's objective computes (:func:`weighted_loss`, :func:`draw_noise`, :func:`draw_timesteps`).
"""

from __future__ import annotations

import math

import pytest
import torch

from app.core.configs import ConfigError
from app.core.train_config import TrainConfig
from app.engine.training.losses import draw_noise, draw_timesteps
from app.engine.training.objective import weighted_loss


def sd_scheduler(prediction: str = "epsilon"):
    from diffusers import DDPMScheduler

    return DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type=prediction)


def config(**loss) -> TrainConfig:
    return TrainConfig.from_dict({"min_snr_gamma": 0.0, "loss": loss})


@pytest.fixture
def tensors():
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn((3, 4, 8, 8), generator=gen)
    target = torch.randn((3, 4, 8, 8), generator=gen) * 2  # some errors well above huber_c
    return pred, target, torch.tensor([10, 500, 990])


def per_picture(x: torch.Tensor) -> torch.Tensor:
    return x.mean(dim=(1, 2, 3))


def test_l2_is_the_default_and_is_the_mean_squared_error(tensors):
    pred, target, t = tensors
    got = weighted_loss(TrainConfig.from_dict({"min_snr_gamma": 0.0}), sd_scheduler(), pred, target, t)
    assert torch.allclose(got, per_picture((pred - target) ** 2))


@pytest.mark.parametrize("schedule", ["constant", "exponential", "snr"])
@pytest.mark.parametrize("kind", ["huber", "smooth_l1"])
def test_huber_and_smooth_l1_follow_sd_scripts_with_each_schedule(tensors, kind, schedule):
    pred, target, t = tensors
    sched, c0 = sd_scheduler(), 0.2
    if schedule == "constant":
        c = torch.full((3,), c0)
    elif schedule == "exponential":  # huber_scale 1: 1 at t = 0, huber_c at t = 1000
        c = torch.exp(-(-math.log(c0) / 1000) * t.float())
    else:
        a = sched.alphas_cumprod[t]
        c = (1 - c0) / (1 + ((1 - a) / a) ** 0.5) ** 2 + c0
    c = c.view(-1, 1, 1, 1)
    curve = torch.sqrt((pred - target) ** 2 + c**2) - c
    expected = per_picture(2 * c * curve if kind == "huber" else 2 * curve)
    got = weighted_loss(config(loss_type=kind, huber_schedule=schedule, huber_c=c0), sched, pred, target, t)
    assert torch.allclose(got, expected, rtol=1e-5)
    l2 = per_picture((pred - target) ** 2)
    assert not torch.allclose(got, l2)
    if kind == "huber":  # quadratic for small errors: never above the squared error
        assert torch.all(got <= l2 + 1e-6)


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_debiased_estimation_weights_by_one_over_sqrt_snr(tensors, prediction):
    pred, target, t = tensors
    sched = sd_scheduler(prediction)
    a = sched.alphas_cumprod[t]
    snr = torch.clamp(a / (1 - a), max=1000)
    weight = 1 / (snr + 1) if prediction == "v_prediction" else 1 / torch.sqrt(snr)
    got = weighted_loss(config(debiased_estimation=True), sched, pred, target, t)
    assert torch.allclose(got, per_picture((pred - target) ** 2) * weight, rtol=1e-5)


def test_debiased_estimation_and_min_snr_gamma_multiply(tensors):
    pred, target, t = tensors
    sched = sd_scheduler()
    a = sched.alphas_cumprod[t]
    snr = a / (1 - a)
    both = TrainConfig.from_dict({"min_snr_gamma": 5.0, "loss": {"debiased_estimation": True}})
    expected = per_picture((pred - target) ** 2) * torch.clamp(snr, max=5) / snr / torch.sqrt(snr)
    assert torch.allclose(weighted_loss(both, sched, pred, target, t), expected, rtol=1e-5)


def test_timesteps_stay_within_the_range_and_default_to_the_whole_schedule():
    sched = sd_scheduler()
    ranged = draw_timesteps(config(min_timestep=200, max_timestep=300).loss, sched, 4000, torch.Generator())
    assert ranged.min() == 200 and ranged.max() == 299
    whole = draw_timesteps(config().loss, sched, 4000, torch.Generator().manual_seed(1))
    # The default draws exactly what the trainer drew before the option existed (resumes stay exact).
    assert torch.equal(whole, torch.randint(0, 1000, (4000,), generator=torch.Generator().manual_seed(1)))


def test_multires_noise_is_sd_scripts_pyramid_with_draws_from_the_step_generator():
    shape, offset = (2, 4, 16, 16), 0.1
    opts = config(multires_noise_iterations=3, multires_noise_discount=0.4).loss
    got = draw_noise(shape, torch.Generator().manual_seed(5), offset, opts)

    gen = torch.Generator().manual_seed(5)  # the same draws, in sd-scripts' order
    noise = torch.randn(shape, generator=gen)
    noise = noise + offset * torch.randn((2, 4, 1, 1), generator=gen)
    up = torch.nn.Upsample(size=(16, 16), mode="bilinear")
    for i in range(3):
        r = torch.rand((), generator=gen).item() * 2 + 2
        wn, hn = max(1, int(16 / r**i)), max(1, int(16 / r**i))
        noise = noise + up(torch.randn((2, 4, wn, hn), generator=gen)) * 0.4**i
        if wn == 1 or hn == 1:
            break
    expected = noise / noise.std()
    assert torch.allclose(got, expected, atol=1e-6)
    assert abs(got.std().item() - 1.0) < 1e-5
    plain = draw_noise(shape, torch.Generator().manual_seed(5), offset, config().loss)
    assert not torch.allclose(plain, got)


@pytest.mark.parametrize(
    "loss, message",
    [
        ({"huber_c": 0.0}, "huber_c = 0.0 must be more than 0 and at most 1"),
        ({"min_timestep": 500, "max_timestep": 400}, "min_timestep = 500 and max_timestep = 400 must satisfy"),
        ({"max_timestep": 1001}, "max_timestep = 1001 must satisfy"),
        ({"loss_type": "l1"}, "loss_type = 'l1' is not one of 'l2', 'huber', 'smooth_l1'"),
        ({"multires_noise_iterations": 50}, "multires_noise_iterations = 50 must be between 0 and 20"),
    ],
)
def test_impossible_loss_settings_are_named(loss, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        TrainConfig.from_dict({"loss": loss}, where="my.toml")
