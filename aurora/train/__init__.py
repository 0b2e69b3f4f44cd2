"""Training: LLaVA-format data, AuroraCap's stages as configuration, accelerate for scale."""

from aurora.train.config import TrainConfig, load_config
from aurora.train.loop import train

__all__ = ["TrainConfig", "load_config", "train"]
