"""LoRA Loom: make, caption, train and blend image LoRAs."""

__version__ = "0.1.0"
