"""LRC Studio's library: LRC-BERT distillation (Fu et al., AAAI 2021) on Hugging Face transformers + Accelerate.

The loss functions are exported lazily: `import lrc.runs` (what the app needs at start-up) must not pay for
importing torch.
"""

from .config import DistillConfig, StudentConfig
from .errors import ConfigError, DataError, LRCError, ModelLoadError

_LOSSES = ("cos_nce", "angular_distance", "soft_label_loss", "hard_label_loss")

__all__ = ["DistillConfig", "StudentConfig", "LRCError", "ConfigError", "DataError", "ModelLoadError", *_LOSSES]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LOSSES:
        from . import losses

        return getattr(losses, name)
    raise AttributeError(f"module 'lrc' has no attribute {name!r}")
