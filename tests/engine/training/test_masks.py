"""Masked loss: masks found beside the picture, cropped exactly like its latent, hostile masks told."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image
from train_helpers import small_config, warnings_in

from app.core.train_validation import MaskOptions
from app.engine.training import Trainer
from app.engine.training.buckets import plan_crop
from app.engine.training.caches import prepare_pixels
from app.engine.training.masks import build_masks, mask_pixels
from app.engine.training.objective import fixed_loss

pytestmark = pytest.mark.slow

WIDE = (128, 64)  # centre-cropped to 64 x 64: columns 32..95 of the picture stay
SQUARE = (72, 20, 96, 44)  # a white square in picture pixels: columns 40..63, rows 20..43 of the crop


def _picture(path, square=SQUARE, size=WIDE):
    im = Image.new("RGB", size, (0, 0, 0))
    if square is not None:
        im.paste((255, 255, 255), square)
    im.save(path)


def _config(base, folder, **extra):
    return small_config(
        base,
        folder,
        steps=1,
        data={"bucketing": False, "batch_size": 1},
        masks={"enabled": True, "unmasked_weight": 0.0},
        **extra,
    )


def test_a_mask_lines_up_with_the_cached_latent_of_its_picture(tiny_sd1, tmp_path):
    folder = tmp_path / "pics"
    folder.mkdir()
    _picture(folder / "square.png")
    _picture(folder / "black.png", square=None)
    (folder / "masks").mkdir()  # the mask of square.png in a masks/ folder: the same white square
    Image.open(folder / "square.png").convert("L").save(folder / "masks" / "square.png")
    trainer = Trainer(_config(tiny_sd1, folder))
    trainer.run()
    session = trainer.session
    assert sorted(i.path.name for i in session.data.items) == ["black.png", "square.png"]  # masks/ is not a dataset
    square, black = sorted(session.data.items, key=lambda i: i.path.name != "square.png")
    weights = session.masks.batch([square], [False])[0, 0]
    latent, _ = session.latents.load(square.path, square.bucket, False)
    assert weights.shape == latent.shape[1:]
    # The mask goes through the crop (and flip) of the pixels the latent was encoded from.
    for flip in (False, True):
        pixels = prepare_pixels(square.path, plan_crop(*square.size, square.bucket), flip)
        white = (pixels.mean(0) > 0).float()
        assert torch.equal(
            (mask_pixels(Image.open(folder / "masks" / "square.png"), square, flip)[0] > 0.5).float(), white
        )
    # At latent size each weight is the share of white pixels its latent pixel covers.
    factor = 64 // weights.shape[-1]
    pixels = prepare_pixels(square.path, plan_crop(*square.size, square.bucket), False)
    share = torch.nn.functional.avg_pool2d((pixels.mean(0) > 0).float()[None, None], factor)[0, 0]
    assert torch.allclose(weights, share, atol=0.02)
    assert weights[:, : 40 // factor].max() == 0 and weights[24 // factor, 48 // factor] == 1  # cropped, not squeezed
    assert session.masks.batch([black], [False]) is None  # no mask (told once, trains on every pixel)


def test_unmasked_weight_scales_the_background_and_the_alpha_channel_is_a_mask(tiny_sd1, tmp_path):
    folder = tmp_path / "alpha"
    folder.mkdir()
    im = Image.new("RGBA", (64, 64), (200, 30, 30, 0))  # fully transparent: the mask is black everywhere
    im.save(folder / "clear.png")
    trainer = Trainer(_config(tiny_sd1, folder))
    trainer.run()
    session = trainer.session
    losses = {}
    for weight in (0.0, 0.25, 1.0):
        opts = MaskOptions(enabled=True, unmasked_weight=weight)
        session.masks = build_masks(opts, session.data.items, False, session.pipe.vae_scale_factor, print)
        losses[weight] = fixed_loss(session)
    session.masks = None
    whole = fixed_loss(session)
    assert losses[0.0] == 0.0  # transparent everywhere: nothing to learn from
    assert losses[0.25] == pytest.approx(0.25 * whole, rel=1e-5)
    assert losses[1.0] == pytest.approx(whole, rel=1e-6)


@pytest.mark.parametrize("kind", ["wrong size", "not an image", "link out of the folder"])
def test_a_bad_mask_is_told_in_one_sentence_and_the_picture_trains_unmasked(tiny_sd1, tmp_path, kind):
    folder = tmp_path / "bad"
    folder.mkdir()
    _picture(folder / "pic.png")
    mask = folder / "pic.mask.png"
    if kind == "wrong size":
        Image.new("L", (32, 32), 255).save(mask)
        expected = f"mask {mask}: 32x32 pixels, but the picture is 128x64; pic.png trains without a mask"
    elif kind == "not an image":
        mask.write_bytes(b"not a png at all")
        expected = f"mask {mask}: not an image that can be decoded; pic.png trains without a mask"
    else:
        secret = tmp_path / "secret.png"
        Image.new("L", WIDE, 255).save(secret)
        os.symlink(secret, mask)
        expected = (
            f"mask {mask}: a link to {secret}, outside the folder {folder}; it is not read; "
            "pic.png trains without a mask"
        )
    events = []
    trainer = Trainer(_config(tiny_sd1, folder), on_event=events.append)
    result = trainer.run()
    assert result.status == "done"
    assert expected in warnings_in(events)
    assert trainer.session.masks.batch(trainer.session.data.items, [False]) is None
