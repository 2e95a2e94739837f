"""Devices and precision: what `auto` resolves to, a refused GPU, and the one adapter over Accelerate's internals."""

from __future__ import annotations

import pytest
import torch
from accelerate.state import AcceleratorState

from lrc.devices import cpu_has_fast_bf16, fresh_accelerator, make_accelerator, resolve_precision
from lrc.errors import ConfigError

from conftest import tiny_config


def test_auto_precision_per_device(monkeypatch):
    monkeypatch.setattr("lrc.devices.cpu_has_fast_bf16", lambda: False)
    assert resolve_precision("auto", "cpu") == "no"
    monkeypatch.setattr("lrc.devices.cpu_has_fast_bf16", lambda: True)
    assert resolve_precision("auto", "cpu") == "bf16"
    assert resolve_precision("bf16", "cpu") == "bf16" and resolve_precision("no", "cuda") == "no"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert resolve_precision("auto", "cuda") == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert resolve_precision("auto", "cuda") == "fp16"


def test_asking_for_a_gpu_without_one_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no GPU is visible; use device 'auto' or 'cpu'"):
        make_accelerator(tiny_config(device="cuda"))
    assert make_accelerator(tiny_config(device="auto")).device.type == "cpu"


def test_a_second_run_with_another_precision_in_one_process():
    """Accelerate refuses a second setting of its process-wide state; lrc resets it through one private method.
    If Accelerate renames or changes `_reset_state`, this fails here instead of in the app."""
    assert hasattr(AcceleratorState, "_reset_state")
    assert make_accelerator(tiny_config(mixed_precision="no")).mixed_precision == "no"
    assert make_accelerator(tiny_config(mixed_precision="bf16")).mixed_precision == "bf16"
    assert fresh_accelerator(cpu=True, mixed_precision="no").mixed_precision == "no"


def test_the_cpu_bf16_probe_answers():
    assert isinstance(cpu_has_fast_bf16(), bool)  # torch's probe exists on this torch (it is a private op)
