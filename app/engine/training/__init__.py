"""Training a LoRA: data and caches, the peft network, the accelerate loop, run folders.

    from app.engine.training import train
    result = train(TrainConfig.load_toml("my.toml"), on_event=print)
"""

from app.engine.training.data import TrainError
from app.engine.training.trainer import Event, TrainResult, Trainer, train

__all__ = ["Event", "TrainError", "TrainResult", "Trainer", "train"]
