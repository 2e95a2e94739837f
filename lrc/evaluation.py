"""Predictions of a model over a tokenized dataset, and dev metrics from them (inside and outside training)."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader
from transformers import PreTrainedModel

from .data import make_loader
from .metrics import compute_metrics
from .tasks import TaskSpec

StopCheck = Callable[[], bool]
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@torch.no_grad()
def predict_dataset(model: PreTrainedModel, ds, tokenizer, batch_size: int, accelerator: Accelerator | None = None,
                    should_stop: StopCheck | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Logits and labels for a tokenized dataset (None if a stop request came in the middle)."""
    device = accelerator.device if accelerator is not None else next(model.parameters()).device
    loader: DataLoader = make_loader(ds, tokenizer, batch_size, shuffle=False)
    was_training = model.training
    model.eval()
    logits, labels = [], []
    for batch in loader:
        if should_stop is not None and should_stop():
            model.train(was_training)
            return None
        inputs = {k: batch[k].to(device) for k in MODEL_INPUTS if k in batch}
        ctx = accelerator.autocast() if accelerator is not None else torch.autocast("cpu", enabled=False)
        with ctx:
            logits.append(model(**inputs).logits.float().cpu())
        labels.append(batch["labels"])
    model.train(was_training)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def evaluate_splits(model: PreTrainedModel, dev_sets: dict[str, Any], task: TaskSpec, tokenizer, batch_size: int,
                    accelerator: Accelerator | None = None, should_stop: StopCheck | None = None
                    ) -> dict[str, dict[str, float]]:
    """Metrics per dev split; {} when a stop request interrupts it."""
    results = {}
    for name, ds in dev_sets.items():
        out = predict_dataset(model, ds, tokenizer, batch_size, accelerator, should_stop=should_stop)
        if out is None:
            return {}
        results[name] = compute_metrics(task, *out)
    return results
