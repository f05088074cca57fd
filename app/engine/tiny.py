"""Tiny offline Stable Diffusion models for tests (DESIGN.md section 6).

``write_tiny_model`` writes a complete diffusers folder with seeded random weights
whose *structure* follows the real models (module and key names, projection kinds,
two text encoders and ``text_time`` conditioning for SDXL) at a size that renders a
64x64 picture in a fraction of a second on a CPU. The CLIP BPE tokenizer is built
here from a fixed word list; nothing is downloaded.

``pretrained_tiny_path`` points at the committed pre-trained fixtures made by
``scripts/pretrain_tiny.py`` (a random VAE cannot return a colour).

Engine code: never import this module from the GUI.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from app.core import families
from app.core.families import Family
from app.core.files import make_ordinary
from app.engine.families import engine
from app.engine.tiny_text import quiet_libraries, text_config, write_tokenizer

FAMILIES = tuple(f.value for f in Family)

#: Written into each tiny folder (diffusers ignores unknown files at the root).
INFO_FILE = "loraloom_tiny.json"
_TOKENIZERS = ("tokenizer", "tokenizer_2")  # pipeline component names, in encoder order
_TEXT_ENCODERS = ("text_encoder", "text_encoder_2")

_FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"


def unet_config(family: str) -> dict:
    """UNet2DConditionModel kwargs: the real layout, tiny widths, 8x8 latents (64 px)."""
    _check_family(family)
    return engine(family).tiny_unet_config()


def vae_config() -> dict:
    """AutoencoderKL kwargs: four blocks like the real VAE (scale factor 8), tiny widths."""
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 32, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,  # >= 4 channels a group, or GroupNorm erases flat colours
        sample_size=64,
        scaling_factor=0.18215,
    )


def scheduler_config() -> dict:
    return dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="epsilon",
        steps_offset=1,
        timestep_spacing="leading",
        interpolation_type="linear",
        use_karras_sigmas=False,
    )


def _pad_token(family: str, name: str) -> str:
    """The pad token of tokenizer ``name`` ("tokenizer", "tokenizer_2"…) of the family's tiny model."""
    encoders = engine(family).tiny_text_encoders
    return encoders[_TOKENIZERS.index(name)].pad


def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"unknown tiny model family {family!r}: expected one of {', '.join(FAMILIES)}")


# ---------------------------------------------------------------------------- building
# ---------------------------------------------------------------------------- building
def build_tiny_pipeline(family: str = "sd1", seed: int = 0):
    """Return an in-memory tiny pipeline with seeded random weights (CPU, fp32)."""
    _check_family(family)
    if hasattr(engine(family), "build_tiny"):  # a family that is not a UNet pipeline builds its own
        return engine(family).build_tiny(seed)
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    quiet_libraries()
    fam = engine(family)
    encoders = fam.tiny_text_encoders
    parts: dict = {}
    with tempfile.TemporaryDirectory(prefix="tiny-tok-") as tok_dir:
        for i, enc in enumerate(encoders):
            vocab = write_tokenizer(Path(tok_dir) / _TOKENIZERS[i], pad_token=enc.pad)
            parts[_TOKENIZERS[i]] = CLIPTokenizer.from_pretrained(Path(tok_dir) / _TOKENIZERS[i])

    def seeded(offset: int):
        torch.manual_seed(seed * 1000 + offset)

    with torch.random.fork_rng(devices=[]):
        seeded(1)
        unet = UNet2DConditionModel(**unet_config(family))
        seeded(2)
        vae = AutoencoderKL(**vae_config())
        scheduler = EulerDiscreteScheduler(**scheduler_config())
        for i, enc in enumerate(encoders):
            seeded(3 + i)
            cls = CLIPTextModel if enc.projection is None else CLIPTextModelWithProjection
            config = text_config(vocab, enc.width, projection=enc.projection, pad_token=enc.pad, act=enc.act)
            parts[_TEXT_ENCODERS[i]] = cls(CLIPTextConfig(**config))

    for m in (unet, vae) + tuple(parts[name] for name in _TEXT_ENCODERS[: len(encoders)]):
        m.eval()
    return fam.pipeline_class()(vae=vae, unet=unet, scheduler=scheduler, **parts, **fam.tiny_pipeline_kwargs())


def save_pipeline(pipe, out_dir, family: str, *, overwrite: bool = False, info: dict | None = None) -> Path:
    """Save ``pipe`` as a diffusers folder (fp32 safetensors), atomically: written into a
    temp folder beside ``out_dir``, then renamed into place."""
    out = Path(out_dir)
    _check_target(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        make_ordinary(tmp, folder=True)  # mkdtemp makes it private; the result is an ordinary folder
        pipe.save_pretrained(tmp, safe_serialization=True)
        # transformers 5 saves tokenizer.json only; keep the CLIP files real models ship.
        for name in _TOKENIZERS[: len(engine(family).tiny_text_encoders)]:  # the CLIP ones
            if (tmp / name).is_dir():
                shutil.rmtree(tmp / name)
                write_tokenizer(tmp / name, pad_token=_pad_token(family, name))
        meta = {"family": family, "format": 1}
        meta.update(info or {})
        (tmp / INFO_FILE).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
        _move_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _check_target(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; choose another folder or replace it (--overwrite)")


def _move_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    _check_target(out, overwrite)  # again: someone may have written there meanwhile
    old = None
    if out.is_dir():
        if any(out.iterdir()):
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        else:
            out.rmdir()
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_tiny_model(out_dir, family: str = "sd1", seed: int = 0, *, overwrite: bool = False) -> Path:
    """Write a complete tiny diffusers folder with seeded random weights; return its path.

    ``family``: "sd1" (StableDiffusionPipeline, text width 32, conv proj_in/out),
    "sd2" (StableDiffusionPipeline, text width 48, linear proj_in/out, epsilon) or
    "sdxl" (StableDiffusionXLPipeline, two text encoders, width 64, ``text_time``).
    Raises FileExistsError when ``out_dir`` is a non-empty folder unless ``overwrite``.
    """
    _check_family(family)
    out = Path(out_dir)
    _check_target(out, overwrite)
    pipe = build_tiny_pipeline(family, seed)
    return save_pipeline(pipe, out, family, overwrite=overwrite, info={"seed": seed, "pretrained": False})


def pretrained_tiny_path(family: str = "sd1") -> Path:
    """Folder of the committed pre-trained tiny model (``tests/fixtures/tiny-<family>-pretrained``)."""
    _check_family(family)
    path = _FIXTURES / f"tiny-{family}-pretrained"
    if not (path / "model_index.json").is_file():
        raise FileNotFoundError(
            f"pre-trained tiny {family} model not found at {path}; make it with "
            f"`python scripts/pretrain_tiny.py --family {family} --out {path}`"
        )
    return path


def load_tiny_pipeline(path, family: str | None = None):
    """Load a tiny folder with the right pipeline class, offline, progress bars off."""
    quiet_libraries()
    path = Path(path)
    if family is None:
        index = json.loads((path / "model_index.json").read_text(encoding="utf-8"))
        family = (families.by_pipeline_class(index.get("_class_name", "")) or (families.FALLBACK,))[0]
    cls = engine(family).pipeline_class()
    pipe = cls.from_pretrained(path, local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe
