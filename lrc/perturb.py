"""Gradient perturbation of the student's embedding output (LRC_METHOD.md, "Gradient perturbation").

The step is: clean pass -> gradient of the loss w.r.t. the embedding output e only -> e' = e + eps * g/||g||
(per token by default; per sequence or relative to e's length as options) -> perturbed pass, whose loss alone
updates the weights. Two pieces live here: the pure
perturbation, and a context manager that makes a Hugging Face model use a given embedding output, so the
perturbed pass reuses the clean pass's embedding computation instead of running it again.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn


def perturb_embeddings(embeddings: torch.Tensor, grad: torch.Tensor, epsilon: float, norm: str = "token",
                       mask: torch.Tensor | None = None) -> torch.Tensor:
    """Move the embedding output e along its loss gradient g by a size set by epsilon and `norm`:

    - token: e + eps * g / ||g||, the norm per token over the hidden dimension (LRC_METHOD.md): every real
      token moves by exactly eps, whatever its gradient's size;
    - sequence: e + eps * g / ||g||_F, one norm over the whole sequence (FGM, Miyato et al.): the sequence moves
      by eps in all, most where the gradient is largest;
    - relative: e + eps * ||e|| * g / ||g|| per token: each token moves by eps times its own embedding's length,
      so eps is a fraction (0.1 = 10 % of the vector) whatever the model's embedding scale.

    Tokens whose gradient is zero (padding) are left where they are rather than divided by zero; `mask` (1 for
    real tokens) keeps padding out of the sequence norm.
    """
    g = grad.detach().float()
    g = torch.where(torch.isfinite(g), g, torch.zeros_like(g))  # an fp16 overflow in one token must not poison e'
    if mask is not None and g.dim() == 3:
        g = g * mask.to(g.dtype).unsqueeze(-1)
    if norm == "sequence":
        size = g.flatten(1).norm(dim=1).view(-1, *([1] * (g.dim() - 1)))
    else:
        size = g.norm(dim=-1, keepdim=True)
    direction = torch.where(size > 0, g / size.clamp_min(1e-12), torch.zeros_like(g))
    step = epsilon * direction
    if norm == "relative":
        step = step * embeddings.detach().float().norm(dim=-1, keepdim=True)
    elif norm not in ("token", "sequence"):
        raise ValueError(f"unknown perturbation norm {norm!r}; use token, sequence or relative")
    return embeddings + step.to(embeddings.dtype)


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
