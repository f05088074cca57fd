"""Label, one-sentence tooltip and input limits of every TrainConfig setting, and where it sits.

Keys are ``name`` for top-level settings and ``section.name`` for the tables
(``network.rank``). A test checks that every field of TrainConfig has an entry, so a
setting added to the config cannot appear in the form without an explanation.
"""

from __future__ import annotations

from dataclasses import dataclass

INT_MAX = 2**31 - 1


@dataclass(frozen=True)
class Setting:
    label: str
    tip: str
    minimum: float | None = None
    maximum: float | None = None
    multiple: int = 0  # integers that must be a multiple of this (picture sizes)
    choices: tuple = ()  # a closed list of integers shown as a combo box
    suffix: str = ""


S = Setting
HELP: dict[str, Setting] = {
    # ---------------------------------------------------------------- top level
    "preset": S("Preset", "The preset the other values started from (character, style …); informational once loaded."),
    "name": S(
        "Output name", "Name of the run folder and of the adapter files (letters, digits, spaces, '.', '-', '_')."
    ),
    "base": S(
        "Base model", "The model the LoRA is trained for: a Hub id, a diffusers folder or a single .safetensors file."
    ),
    "trigger": S(
        "Trigger word", "The word that calls up what you trained; written into the adapter so other tools show it."
    ),
    "output_dir": S("Runs folder", "Where the run folder is created; empty uses the app's runs folder."),
    "cache_dir": S(
        "Cache folder", "Where VAE latents and text embeddings are cached; empty uses the shared app cache."
    ),
    "seed": S(
        "Seed", "Seed for noise, batches and augmentations: the same seed and settings give the same run.", 0, 2**32 - 1
    ),
    "steps": S("Length", "How long to train: optimizer steps, or whole passes over the dataset (epochs).", 1, INT_MAX),
    "gradient_accumulation": S(
        "Gradient accumulation",
        "Batches added up before each optimizer step: a larger effective batch without more memory.",
        1,
        1024,
    ),
    "gradient_checkpointing": S(
        "Gradient checkpointing", "Recompute activations in the backward pass: much less memory, about 20% slower."
    ),
    "mixed_precision": S(
        "Precision", "Number format for training: auto uses bf16 or fp16 on a GPU and fp32 on the CPU."
    ),
    "device": S("Device", "Where to train: auto picks the GPU when there is one."),
    "noise_offset": S(
        "Noise offset",
        "Extra offset noise that helps very dark and very bright pictures; 0 is off, 0.03–0.1 is typical.",
        0.0,
        1.0,
    ),
    "min_snr_gamma": S(
        "Min-SNR gamma",
        "Reweights timesteps so training converges faster; 5 is the usual value, 0 turns it off.",
        0.0,
        1000.0,
    ),
    "prediction": S(
        "Prediction",
        "What the model predicts; auto follows the base model's scheduler (SD 2.x 768 models use v-prediction).",
    ),
    "datasets": S("Datasets", "Folders of training pictures; kohya 'N_name' folders repeat their pictures N times."),
    # ---------------------------------------------------------------- [[datasets]]
    "datasets.path": S("Folder", "The folder of training pictures (searched recursively)."),
    "datasets.repeats": S(
        "Repeats",
        "How often each picture counts per epoch; 0 takes it from a kohya 'N_name' folder name, else 1.",
        0,
        10000,
    ),
    "datasets.caption": S(
        "Caption for uncaptioned", "Caption for pictures without a caption file; empty uses the folder name's words."
    ),
    "datasets.regularization": S(
        "Regularization", "Class pictures for prior preservation rather than pictures of your subject."
    ),
    # ---------------------------------------------------------------- [data]
    "data.resolution": S(
        "Resolution",
        "Training size in pixels (the area of resolution × resolution); 512 for SD 1.x, 1024 for SDXL.",
        64,
        4096,
        multiple=64,
        suffix=" px",
    ),
    "data.bucketing": S(
        "Aspect-ratio buckets", "Train each picture at its own aspect ratio instead of centre-cropping it to a square."
    ),
    "data.min_bucket": S(
        "Smallest bucket side", "The shortest side a bucket may have.", 64, 4096, multiple=64, suffix=" px"
    ),
    "data.max_bucket": S(
        "Largest bucket side", "The longest side a bucket may have.", 64, 4096, multiple=64, suffix=" px"
    ),
    "data.bucket_step": S(
        "Bucket step", "Bucket sides are multiples of this many pixels.", choices=(8, 16, 32, 64, 128)
    ),
    "data.no_upscale": S("Never upscale", "Small pictures get a smaller bucket instead of being enlarged."),
    "data.min_image_side": S(
        "Smallest usable picture",
        "Pictures with a shorter side than this are reported and skipped.",
        1,
        4096,
        suffix=" px",
    ),
    "data.batch_size": S("Batch size", "Pictures per step; larger batches are smoother but need more memory.", 1, 256),
    "data.caption_dropout": S(
        "Caption dropout",
        "Share of steps trained with an empty caption, so the LoRA also works without its trigger.",
        0.0,
        1.0,
    ),
    "data.shuffle_tags": S("Shuffle tags", "Shuffle the comma-separated tags of each caption at every step."),
    "data.keep_tags": S(
        "Keep first tags", "With shuffling, this many leading tags (the trigger) stay in place.", 0, 1000
    ),
    "data.separator": S("Tag separator", "The text between tags in caption files."),
    "data.flip": S("Random flip", "Mirror pictures at random; doubles the data, but not for asymmetric characters."),
    "data.reg_weight": S("Regularization weight", "Loss weight of the regularization pictures.", 0.0, 100.0),
    # ---------------------------------------------------------------- [network]
    "network.rank": S(
        "Rank", "Size of the adapter: higher learns more detail and makes a bigger file (8–32 is typical).", 1, 1024
    ),
    "network.alpha": S("Alpha", "Scales the adapter by alpha / rank; half the rank is a common choice.", 0.0, 100000.0),
    "network.dropout": S(
        "Dropout", "Share of the adapter's features dropped at random in each step, against overfitting.", 0.0, 0.99
    ),
    "network.dora": S("DoRA", "Weight-decomposed LoRA: often better quality, a little slower to train."),
    "network.targets": S(
        "Layers",
        "Which layers get an adapter: attention only, plus feed-forward, plus convolutions (LoCon), or every "
        "linear layer (Flux: with the modulation).",
    ),
    "network.conv_rank": S("Conv rank", "Rank of the convolution adapters with LoCon; 0 uses the rank.", 0, 1024),
    "network.conv_alpha": S(
        "Conv alpha", "Alpha of the convolution adapters with LoCon; 0 uses the alpha.", 0.0, 100000.0
    ),
    "network.train_text_encoder": S(
        "Train text encoder", "Also train the text encoder(s): stronger trigger words, more memory."
    ),
    "network.text_encoder_lr": S("Text encoder LR", "Learning rate of the text encoder adapters.", 0.0, 10.0),
    "network.init": S(
        "Initialisation",
        "How the adapter starts: gaussian learns fastest here; pissa and olora start from the model's own weights.",
    ),
    # ---------------------------------------------------------------- [loss]
    "loss.loss_type": S(
        "Loss", "How prediction errors count: l2 (squared), or huber / smooth_l1, which count big errors less."
    ),
    "loss.huber_schedule": S(
        "Huber schedule", "How the Huber threshold changes with the noise level: constant, exponential or by SNR."
    ),
    "loss.huber_c": S(
        "Huber threshold", "Errors above this count linearly, not squared (sd-scripts' huber_c).", 0.0, 1.0
    ),
    "loss.debiased_estimation": S(
        "Debiased estimation", "Weights each noise level by 1/sqrt(SNR), so noisy steps count more and details less."
    ),
    "loss.multires_noise_iterations": S(
        "Multi-res noise levels",
        "Adds coarser noise at this many scales (6–10 typical) for bolder contrast; 0 is off.",
        0,
        20,
    ),
    "loss.multires_noise_discount": S(
        "Multi-res noise discount", "Strength of each coarser noise level relative to the last (0.3 typical).", 0.0, 1.0
    ),
    "loss.min_timestep": S(
        "Lowest timestep", "Train only on timesteps from this one up (0 is the least noisy).", 0, 999
    ),
    "loss.max_timestep": S(
        "Highest timestep", "Train only on timesteps below this one (1000 includes pure noise).", 1, 1000
    ),
    # ---------------------------------------------------------------- [ema]
    "ema.enabled": S(
        "Weight average (EMA)", "Also save a moving average of the adapter's weights as <name>-ema.safetensors."
    ),
    "ema.decay": S(
        "EMA decay", "How slowly the average follows the weights: 0.999 averages about 1000 steps.", 0.0, 0.99999
    ),
    "ema.on_cpu": S("EMA in CPU memory", "Keep the average in CPU memory: no GPU memory, a copy every step."),
    "ema.samples": S(
        "Samples from EMA", "Render the sample pictures with the averaged weights instead of the current ones."
    ),
    # ---------------------------------------------------------------- [optimizer]
    "optimizer.kind": S(
        "Optimizer",
        "AdamW is the safe default; 8-bit AdamW saves GPU memory; Prodigy finds its own rate (use learning rate 1).",
    ),
    "optimizer.learning_rate": S(
        "Learning rate", "How fast the adapter changes: 1e-4 is typical for AdamW, 1 for Prodigy.", 0.0, 10.0
    ),
    "optimizer.weight_decay": S(
        "Weight decay", "Pulls the adapter's weights towards zero a little at every step.", 0.0, 10.0
    ),
    "optimizer.schedule": S(
        "LR schedule", "How the learning rate changes over the run: constant, cosine decay or linear decay."
    ),
    "optimizer.warmup_steps": S(
        "Warm-up steps", "Steps over which the learning rate rises from 0 at the start.", 0, INT_MAX
    ),
    "optimizer.max_grad_norm": S(
        "Gradient clipping", "Largest gradient norm before clipping; 0 turns clipping off.", 0.0, 1000.0
    ),
    # ---------------------------------------------------------------- [output]
    "output.save_every": S(
        "Save every", "Steps between checkpoints; 0 saves only the final adapter.", 0, INT_MAX, suffix=" steps"
    ),
    "output.keep_last": S(
        "Keep last", "How many step checkpoints to keep (the final file always stays); 0 keeps all.", 0, 100000
    ),
    "output.diffusers_copy": S("Diffusers copy", "Also write a diffusers/peft-layout copy of the final adapter."),
    # ---------------------------------------------------------------- [sample]
    "sample.every": S(
        "Sample every",
        "Steps between sample pictures; 0 renders none (Sample now still works).",
        0,
        INT_MAX,
        suffix=" steps",
    ),
    "sample.prompts": S(
        "Sample prompts",
        "One prompt per line, rendered with the same seed at every sampling step; {trigger} becomes the trigger word.",
    ),
    "sample.negative": S("Sample negative", "Negative prompt for the sample pictures."),
    "sample.seed": S(
        "Sample seed", "Seed of the first sample prompt; prompt i uses seed + i, the same at every step.", 0, 2**63 - 1
    ),
    "sample.steps": S("Sample steps", "Sampling steps per sample picture.", 1, 500),
    "sample.guidance": S("Sample guidance", "Classifier-free guidance scale of the sample pictures.", 0.0, 50.0),
    "sample.width": S(
        "Sample width",
        "Width of the sample pictures; 0 uses the training resolution.",
        0,
        4096,
        multiple=8,
        suffix=" px",
    ),
    "sample.height": S(
        "Sample height",
        "Height of the sample pictures; 0 uses the training resolution.",
        0,
        4096,
        multiple=8,
        suffix=" px",
    ),
    # ---------------------------------------------------------------- [validation]
    "validation.images": S(
        "Held-out pictures",
        "Training pictures set aside (chosen by the seed) to measure the validation loss; 0: none.",
        0,
        10000,
    ),
    "validation.folder": S(
        "Validation folder", "Or a folder of pictures (with captions) never trained on, to measure the validation loss."
    ),
    "validation.every": S(
        "Validate every",
        "Steps between validation losses (fixed noise and timesteps); also at each scheduled checkpoint.",
        1,
        INT_MAX,
        suffix=" steps",
    ),
    # ---------------------------------------------------------------- [masks]
    "masks.enabled": S(
        "Masked loss",
        "Train only where each picture's mask is white (alpha channel, name.mask.png or masks/name.png).",
    ),
    "masks.unmasked_weight": S(
        "Unmasked weight",
        "Loss weight where the mask is black (the background): 0 ignores it, 1 is no masking.",
        0.0,
        1.0,
    ),
    "sample.scheduler": S("Sample sampler", "Sampler used to render the sample pictures (Flux uses its own)."),
    # ---------------------------------------------------------------- fp8 and [flow] (Flux.1)
    "fp8_base": S(
        "fp8 base weights",
        "Flux: store the base model's weights in 8 bits and compute in bf16, halving their memory (12 GB GPUs).",
    ),
    "flow.timestep_sampling": S(
        "Noise levels",
        "Flux: how training noise levels are drawn; shift follows the resolution as Flux renders, uniform is flat.",
    ),
    "flow.logit_mean": S(
        "Noise level mean",
        "Flux: the centre of the logit-normal draw; above 0 trains more on noisy steps.",
        -10.0,
        10.0,
    ),
    "flow.logit_std": S(
        "Noise level spread", "Flux: the spread of the logit-normal draw; 1 is the usual value.", 0.01, 10.0
    ),
    "flow.guidance_scale": S(
        "Training guidance",
        "Flux [dev]: the guidance value the model is given while training; 1 as sd-scripts.",
        0.0,
        100.0,
    ),
}

# The settings always on show; everything else sits in a collapsible Advanced group.
ESSENTIALS = (
    "name",
    "trigger",
    "steps",
    "network.rank",
    "optimizer.learning_rate",
    "data.resolution",
    "data.batch_size",
    "sample.prompts",
    "sample.every",
)

# Advanced groups: title -> keys, in order. The form adds any TrainConfig field missing here
# to "Other" so that nothing a newer config holds is dropped on save.
ADVANCED: dict[str, tuple[str, ...]] = {
    "Network": (
        "network.alpha",
        "network.targets",
        "network.dropout",
        "network.dora",
        "network.conv_rank",
        "network.conv_alpha",
        "network.train_text_encoder",
        "network.text_encoder_lr",
        "network.init",
    ),
    "Optimizer": (
        "optimizer.kind",
        "optimizer.schedule",
        "optimizer.warmup_steps",
        "optimizer.weight_decay",
        "optimizer.max_grad_norm",
    ),
    "Data": (
        "data.bucketing",
        "data.min_bucket",
        "data.max_bucket",
        "data.bucket_step",
        "data.no_upscale",
        "data.min_image_side",
        "data.caption_dropout",
        "data.shuffle_tags",
        "data.keep_tags",
        "data.separator",
        "data.flip",
        "data.reg_weight",
    ),
    "Training": (
        "seed",
        "gradient_accumulation",
        "gradient_checkpointing",
        "mixed_precision",
        "device",
        "noise_offset",
        "min_snr_gamma",
        "prediction",
    ),
    "Loss": (
        "loss.loss_type",
        "loss.huber_schedule",
        "loss.huber_c",
        "loss.debiased_estimation",
        "loss.multires_noise_iterations",
        "loss.multires_noise_discount",
        "loss.min_timestep",
        "loss.max_timestep",
    ),
    "Weight average": ("ema.enabled", "ema.decay", "ema.on_cpu", "ema.samples"),
    "Flux": ("fp8_base", "flow.timestep_sampling", "flow.logit_mean", "flow.logit_std", "flow.guidance_scale"),
    "Saving": ("output.save_every", "output.keep_last", "output.diffusers_copy", "output_dir", "cache_dir"),
    "Samples": (
        "sample.negative",
        "sample.seed",
        "sample.steps",
        "sample.guidance",
        "sample.width",
        "sample.height",
        "sample.scheduler",
    ),
    "Validation": ("validation.images", "validation.folder", "validation.every"),
    "Masks": ("masks.enabled", "masks.unmasked_weight"),
}

# Shown by their own widgets (model picker, preset combo, dataset table), not generated.
SPECIAL = ("version", "preset", "base", "datasets")
