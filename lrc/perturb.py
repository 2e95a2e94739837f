"""Gradient perturbation of the student's embedding output (LRC_METHOD.md, "Gradient perturbation").

The step is: clean pass -> gradient of the loss w.r.t. the embedding output e only -> e' = e + eps * g/||g||
(per token) -> perturbed pass, whose loss alone updates the weights. Two pieces live here: the pure
perturbation, and a context manager that makes a Hugging Face model use a given embedding output, so the
perturbed pass reuses the clean pass's embedding computation instead of running it again.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn


def perturb_embeddings(embeddings: torch.Tensor, grad: torch.Tensor, epsilon: float) -> torch.Tensor:
    """e + epsilon * g / ||g||_2, the norm taken per token over the hidden dimension.

    Tokens whose gradient is zero (padding) are left where they are rather than divided by zero.
    """
    g = grad.detach().float()
    g = torch.where(torch.isfinite(g), g, torch.zeros_like(g))  # an fp16 overflow in one token must not poison e'
    norm = g.norm(dim=-1, keepdim=True)
    direction = torch.where(norm > 0, g / norm.clamp_min(1e-12), torch.zeros_like(g))
    return embeddings + (epsilon * direction).to(embeddings.dtype)


@contextmanager
def embedding_output(module: nn.Module, transform: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Inside the block, whatever `module` (the embedding layer) returns is passed through `transform` first.

    A forward hook rather than a re-implementation of the encoder call: the model's own attention-mask handling,
    hidden-state recording and head stay exactly the library's. The trainer uses it twice per step: to swap in a
    detached leaf (so the clean pass yields d loss / d e without parameter gradients) and to swap in e'.
    """

    def hook(_mod, _inputs, output):
        return transform(output)

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
