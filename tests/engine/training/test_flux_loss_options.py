"""Every ``[loss]`` option on a flow-matching base (the tiny Flux): it works and changes the loss as
sd-scripts documents it, or it is refused in one sentence before any model loads (debiased
estimation and Huber's snr schedule read a DDPM schedule's SNR, which flow matching has not;
sd-scripts refuses them on Flux too)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from train_helpers import small_config

from app.core.train_config import TrainConfig
from app.core.train_options import LossOptions
from app.engine.families import engine
from app.engine.training import Trainer, TrainError
from app.engine.training import session as session_module
from app.engine.training.objective import objective, scaled, time_ids

FLUX = engine("flux1")


@pytest.mark.parametrize(
    "loss, words",
    [
        ({"debiased_estimation": True}, "debiased_estimation weights by a DDPM noise schedule's SNR, and Flux.1"),
        ({"loss_type": "huber"}, 'huber_schedule = "snr" reads a DDPM noise schedule\'s SNR, and Flux.1'),
        ({"loss_type": "smooth_l1", "huber_schedule": "snr"}, 'set huber_schedule = "constant" or "exponential"'),
    ],
)
def test_snr_options_are_refused_on_flux_before_the_model_loads(tiny_flux1, red_dataset, monkeypatch, loss, words):
    def no_loading(*_args, **_kwargs):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(session_module, "load_model", no_loading)
    config = small_config(tiny_flux1, red_dataset, steps=1, loss=loss)
    with pytest.raises(TrainError, match=words.replace("(", r"\(")):
        Trainer(config).run()


def test_the_refusal_is_the_families_property_not_the_schedulers():
    assert FLUX.snr_loss_options is False and engine("sd1").snr_loss_options is True
    assert engine("sdxl").snr_loss_options is True


def _options(**loss) -> LossOptions:
    return TrainConfig.from_dict({"loss": loss}).loss  # read as a TOML table is (enums, checks)


def _loss(session, latents, timesteps, seed=3, **loss) -> torch.Tensor:
    session.config = dataclasses.replace(session.config, loss=_options(**loss))
    item = session.data.train_items[0]
    with torch.no_grad():
        return objective(
            session,
            latents,
            [item.caption] * latents.shape[0],
            [time_ids(item)] * latents.shape[0],
            torch.Generator().manual_seed(seed),
            timesteps=timesteps,
        )


@pytest.mark.slow
def test_every_other_loss_option_changes_the_flux_loss_as_documented(tiny_flux1, red_dataset):
    trainer = Trainer(small_config(tiny_flux1, red_dataset, steps=1))
    assert trainer.run().status == "done"
    session = trainer.session
    session.net.unet.eval()  # no LoRA dropout: each option sees the same prediction
    item = session.data.train_items[0]
    mean, _ = session.latents.load(item.path, item.bucket, False)
    latents = scaled(mean, session.pipe.vae.config, session.family)[None].repeat(3, 1, 1, 1)
    t = torch.tensor([1000.0, 600.0, 250.0])  # sigma * 1000, as the flow draws them
    l2 = _loss(session, latents, t)
    assert torch.isfinite(l2).all() and (l2 > 0).all()

    # Huber (constant c): 2c(sqrt(d² + c²) - c) <= d², and smooth-L1 is the same curve over c.
    huber = _loss(session, latents, t, loss_type="huber", huber_schedule="constant", huber_c=0.3)
    smooth = _loss(session, latents, t, loss_type="smooth_l1", huber_schedule="constant", huber_c=0.3)
    assert (huber < l2).all()
    assert torch.allclose(smooth * 0.3, huber, rtol=1e-5)
    # Exponential: c = exp(-(-ln huber_c / 1000) t): huber_c at sigma = 1, nearer 1 before it.
    expo = _loss(session, latents, t, loss_type="huber", huber_schedule="exponential", huber_c=0.3)
    assert expo[0].item() == pytest.approx(huber[0].item(), rel=1e-5)
    for i, ti in enumerate(t.tolist()[1:], start=1):
        c = math.exp(math.log(0.3) * ti / 1000)
        at_c = _loss(session, latents, t, loss_type="huber", huber_schedule="constant", huber_c=c)
        assert expo[i].item() == pytest.approx(at_c[i].item(), rel=1e-5)

    # Multi-resolution noise: other noise (unit std), so another loss; 0 iterations is plain noise.
    multires = _loss(session, latents, t, multires_noise_iterations=4, multires_noise_discount=0.5)
    assert torch.isfinite(multires).all() and not torch.allclose(multires, l2)
    assert torch.equal(_loss(session, latents, t, multires_noise_iterations=0), l2)

    # The timestep range scales the drawn sigma into it; the whole range leaves the draws alone.
    def draws(**loss):
        config = dataclasses.replace(session.config, loss=_options(**loss))
        return FLUX.sample_timesteps(session.noise_scheduler, config, latents, torch.Generator().manual_seed(1))

    whole, ranged = draws(), draws(min_timestep=200, max_timestep=300)
    assert ((ranged >= 200) & (ranged <= 300)).all()
    assert torch.allclose(ranged, whole * 0.1 + 200, atol=1e-4)
    assert (whole > 300).any()  # the range really moved some of them


def test_try_a_prompt_refusal_names_the_family_from_the_table():
    from types import SimpleNamespace

    from app.engine.training import loop

    said = []
    session = SimpleNamespace(
        config=None,
        pipe=SimpleNamespace(text_encoder=None),
        family="flux1",
        reporter=SimpleNamespace(status=said.append),
    )
    loop._tries(session, 3, [])
    assert len(said) == 1 and "a Flux.1 run releases after caching its captions" in said[0]
