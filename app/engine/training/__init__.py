"""Training a LoRA: data and caches, the peft network, the accelerate loop, run folders.

from app.engine.training import train
result = train(TrainConfig.load_toml("my.toml"), on_event=print)   # typed app.core.events
"""

from app.engine.training.data import TrainError
from app.engine.training.trainer import Trainer, TrainResult, train

__all__ = ["TrainError", "TrainResult", "Trainer", "train"]
