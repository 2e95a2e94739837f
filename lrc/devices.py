"""Devices and precision through Hugging Face Accelerate: which device a run uses, in which precision, and the one
place lrc touches Accelerate's internals.

Accelerate keeps one process-wide `AcceleratorState`; a second run in the same process (the app, the experiment
runner, tests) with another device or precision is refused by it. `fresh_accelerator` resets that state through
Accelerate's private `AcceleratorState._reset_state` (what Accelerate's own tests do). tests/test_devices.py fails
loudly if that method goes away or stops letting a second setting through.
"""

from __future__ import annotations

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedDataParallelKwargs

from .config import DistillConfig
from .errors import ConfigError


def resolve_precision(requested: str, device_type: str) -> str:
    """auto: bf16 on GPUs that support it, fp16 on older GPUs; on a CPU, bf16 where the CPU computes it natively
    (AVX512-BF16 or AMX: a teacher epoch 1.6x faster at the same accuracy, docs/BENCHMARKS.md), else fp32."""
    if requested != "auto":
        return requested
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "no"


def cpu_has_fast_bf16() -> bool:
    """Whether oneDNN runs bf16 matmuls natively on this CPU (emulated bf16 is slower than fp32, so no autocast)."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def make_accelerator(cfg: DistillConfig) -> Accelerator:
    """The run's Accelerator: its device (a GPU when one is visible, unless told cpu) and precision."""
    cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but no GPU is visible; use device 'auto' or 'cpu'")
    precision = resolve_precision(cfg.mixed_precision, "cpu" if cpu else "cuda")
    # stage 1 trains COS-NCE only, so the classifier head gets no gradient there: DDP must allow unused parameters
    handlers = [DistributedDataParallelKwargs(find_unused_parameters=True)]
    try:
        return Accelerator(cpu=cpu, mixed_precision=precision, kwargs_handlers=handlers)
    except ValueError:  # the process-wide state was set up by an earlier run with other settings
        return fresh_accelerator(cpu=cpu, mixed_precision=precision, kwargs_handlers=handlers)


def fresh_accelerator(**kwargs) -> Accelerator:
    """An Accelerator after forgetting the process-wide state (the distributed setup is kept)."""
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(**kwargs)
