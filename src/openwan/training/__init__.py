"""Training: flow-matching DiT training with a staged curriculum, VAE training and LoRA.

>>> from openwan.training import load_config, train, export_checkpoint
>>> result = train(load_config("configs/train/example.toml"))   # same as `openwan train CONFIG`
>>> export_checkpoint(result.output_dir, "my-model")           # same as `openwan export RUN --output DIR`
"""

from .config import TrainConfig, config_from_dict, load_config
from .export import export_checkpoint
from .trainer import StepInfo, TrainResult, train

__all__ = ["StepInfo", "TrainConfig", "TrainResult", "config_from_dict", "export_checkpoint", "load_config", "train"]
