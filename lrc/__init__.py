"""LRC Studio's library: LRC-BERT distillation (Fu et al., AAAI 2021) on Hugging Face transformers + Accelerate."""

from .config import DistillConfig, StudentConfig
from .errors import ConfigError, DataError, LRCError, ModelLoadError
from .losses import angular_distance, cos_nce, hard_label_loss, soft_label_loss

__all__ = [
    "DistillConfig", "StudentConfig", "LRCError", "ConfigError", "DataError", "ModelLoadError",
    "cos_nce", "angular_distance", "soft_label_loss", "hard_label_loss",
]
__version__ = "0.1.0"
