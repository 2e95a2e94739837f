"""Negatives across processes: with data parallelism each sample still contrasts with every other sample of the
global batch, so K does not shrink with the number of GPUs (LRC_METHOD.md, "Negatives")."""

from __future__ import annotations

import torch
from accelerate import Accelerator

from .bank import NegativeBank
from .losses import cos_nce_with_pool


def draw_negatives(bank: NegativeBank | None, cache, rows: torch.Tensor | None, ids: torch.Tensor, k: int,
                   mask: torch.Tensor):
    """This step's K bank negatives per sample (per layer, and their validity mask), or None for in-batch ones.

    The trainer draws once per step, before the clean pass, so the clean and the perturbed pass contrast against
    the same vectors (drawing twice would make the perturbation's direction and the update disagree on what
    "other samples" are). With the teacher cache the negatives come from the whole training set; otherwise
    from the bank once it holds K entries.
    """
    if bank is None:
        return None
    if cache is not None and rows is not None:
        return cache.negatives(rows, k, mask.shape[1], mask.device, bank.generator)
    if len(bank) >= k:
        return bank.sample(ids, k, length=mask.shape[1])
    return None


def gathered_in_batch(acc: Accelerator, students: list[torch.Tensor], teachers: list[torch.Tensor],
                      mask: torch.Tensor, token_mask: torch.Tensor | None) -> torch.Tensor:
    """In-batch negatives across processes: each sample sees every other sample of the global batch."""
    b = students[0].shape[0]
    sizes = acc.gather(torch.tensor([b], device=acc.device))
    offset = int(sizes[: acc.process_index].sum())
    own = torch.arange(b, device=acc.device) + offset
    total = 0.0
    pool_mask = None
    if token_mask is not None:
        pool_mask = acc.gather(acc.pad_across_processes(mask, dim=1))
    for s, t in zip(students, teachers):
        if token_mask is not None:
            pool = acc.gather(acc.pad_across_processes(t.contiguous(), dim=1))
            length = pool.shape[1]
            s_p = torch.nn.functional.pad(s, (0, 0, 0, length - s.shape[1]))
            t_p = torch.nn.functional.pad(t, (0, 0, 0, length - t.shape[1]))
            m_p = torch.nn.functional.pad(mask, (0, length - mask.shape[1]))
            total = total + cos_nce_with_pool(s_p, t_p, pool, own, m_p, pool_mask)
        else:
            pool = acc.gather(t.contiguous())
            total = total + cos_nce_with_pool(s, t, pool, own)
    return total
