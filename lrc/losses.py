"""LRC-BERT's losses as pure functions on tensors (no models, no devices, no config objects).

COS-NCE for one sample, one layer (LRC_METHOD.md):

    L = g(z_T, z_S) + 1/(2K) * sum_i [ 2 - ( g(n_i, z_S) - g(z_T, z_S) ) ],   g(x, y) = 1 - cos(x, y)
      = 2 - 1.5 cos(z_T, z_S) + 0.5 mean_i cos(n_i, z_S)

We compute the closed form: it is the same number and needs no K-sized intermediate beyond the cosines.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-8


def angular_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """g(x, y) = 1 - cos(x, y) over the last dimension, in [0, 2]; the length of the vectors does not matter."""
    return 1.0 - F.cosine_similarity(x.float(), y.float(), dim=-1, eps=_EPS)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return F.normalize(x.float(), dim=-1, eps=_EPS)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the last dim where mask is 1 (all positions when mask is None)."""
    if mask is None:
        return values.mean(-1)
    mask = mask.to(values.dtype)
    return (values * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)


def cos_nce(
    student: torch.Tensor,
    teacher: torch.Tensor,
    negatives: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
    negatives_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """COS-NCE averaged over the batch.

    student, teacher: `[B, D]` (one vector per sample) or `[B, L, D]` (one per token; the loss is computed per
    position and averaged over the positions where `mask` `[B, L]` is 1).
    negatives: `[B, K, D]` or `[B, K, L, D]` teacher vectors of other samples; None uses the batch itself
    (for sample b, the teacher vectors of every other sample, K = B - 1).
    negatives_mask: `[B, K, L]` (token mode) or `[B, K]`: which negatives count (real tokens, not the sample
    itself); defaults to all. For in-batch negatives the other samples' own padding masks are used.
    """
    if student.shape != teacher.shape:
        raise ValueError(f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} must have one shape")
    tokens = student.dim() == 3
    s, t = _unit(student), _unit(teacher)
    pos = (s * t).sum(-1)  # [B] or [B, L]
    if negatives is None:
        if student.shape[0] < 2:
            raise ValueError("in-batch negatives need a batch of at least 2")
        return _cos_nce_in_batch(s, t, pos, mask)
    n = _unit(negatives)
    if tokens:
        neg = torch.einsum("bld,bkld->bkl", s, n)  # [B, K, L]
        # expand: the denominator below must count K * L entries, not L
        valid = mask[:, None, :].to(neg.dtype).expand_as(neg) if mask is not None else torch.ones_like(neg)
        if negatives_mask is not None:
            valid = valid * negatives_mask.to(neg.dtype)
        neg_mean = (neg * valid).sum((1, 2)) / valid.sum((1, 2)).clamp_min(1.0)  # [B]
        pos_mean = _masked_mean(pos, mask)
    else:
        neg = torch.einsum("bd,bkd->bk", s, n)
        if negatives_mask is None:
            neg_mean = neg.mean(-1)
        else:
            valid = negatives_mask.to(neg.dtype)
            neg_mean = (neg * valid).sum(-1) / valid.sum(-1).clamp_min(1.0)
        pos_mean = pos
    return (2.0 - 1.5 * pos_mean + 0.5 * neg_mean).mean()


def _cos_nce_in_batch(s: torch.Tensor, t: torch.Tensor, pos: torch.Tensor, mask: torch.Tensor | None):
    b = s.shape[0]
    off_diag = 1.0 - torch.eye(b, device=s.device, dtype=s.dtype)
    if s.dim() == 2:
        sims = s @ t.T  # [B, B]: student i vs teacher j
        neg_mean = (sims * off_diag).sum(-1) / (b - 1)
        return (2.0 - 1.5 * pos + 0.5 * neg_mean).mean()
    sims = torch.einsum("ild,jld->ijl", s, t)  # [B, B, L]
    m = mask.to(s.dtype) if mask is not None else torch.ones(s.shape[:2], device=s.device, dtype=s.dtype)
    valid = m[:, None, :] * m[None, :, :] * off_diag[:, :, None]  # anchor token real, negative token real
    neg_mean = (sims * valid).sum((1, 2)) / valid.sum((1, 2)).clamp_min(1.0)
    return (2.0 - 1.5 * _masked_mean(pos, mask) + 0.5 * neg_mean).mean()


def cos_nce_with_pool(
    student: torch.Tensor,
    teacher: torch.Tensor,
    pool: torch.Tensor,
    own_index: torch.Tensor,
    mask: torch.Tensor | None = None,
    pool_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """COS-NCE with in-batch negatives drawn from a larger pool (the batch gathered across processes).

    pool: `[P, D]` or `[P, L, D]` teacher vectors of every sample in the global batch; own_index `[B]` is where
    each local sample sits in the pool, so it is left out of its own negatives (K = P - 1).
    """
    s, t, p = _unit(student), _unit(teacher), _unit(pool)
    pos = (s * t).sum(-1)
    exclude = F.one_hot(own_index, p.shape[0]).to(s.dtype)  # [B, P]
    keep = 1.0 - exclude
    if s.dim() == 2:
        neg_mean = ((s @ p.T) * keep).sum(-1) / keep.sum(-1).clamp_min(1.0)
        return (2.0 - 1.5 * pos + 0.5 * neg_mean).mean()
    sims = torch.einsum("ild,jld->ijl", s, p)
    m = mask.to(s.dtype) if mask is not None else torch.ones(s.shape[:2], device=s.device, dtype=s.dtype)
    pm = pool_mask.to(s.dtype) if pool_mask is not None else torch.ones(p.shape[:2], device=s.device, dtype=s.dtype)
    valid = m[:, None, :] * pm[None, :, :] * keep[:, :, None]
    neg_mean = (sims * valid).sum((1, 2)) / valid.sum((1, 2)).clamp_min(1.0)
    return (2.0 - 1.5 * _masked_mean(pos, mask) + 0.5 * neg_mean).mean()


def mse_representation_loss(student: torch.Tensor, teacher: torch.Tensor, mask: torch.Tensor | None = None):
    """The ablation of COS-NCE: plain MSE between projected student and teacher vectors (TinyBERT style)."""
    err = (student.float() - teacher.float()).pow(2).mean(-1)
    if student.dim() == 3:
        err = _masked_mean(err, mask)
    return err.mean()


UNLABELLED = -100  # the label of a transfer-set row (classification); a score task uses NaN


def soft_label_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.1):
    """KL(softmax(t/T) || softmax(s/T)) * T^2, batch mean; MSE to the teacher's score for regression (1 output)."""
    if student_logits.shape[-1] == 1:
        return F.mse_loss(student_logits.float().squeeze(-1), teacher_logits.float().squeeze(-1))
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature**2


def hard_label_loss(student_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with the gold label, or MSE to the gold score when the model has one output (STS-B).

    Rows without a gold label (transfer-set rows: label -100, or NaN for a score) are left out of the mean, and a
    batch with none gives 0. Written as sum / count so nothing waits on the GPU to look at the labels."""
    logits = student_logits.float()
    if logits.shape[-1] == 1:
        gold = labels.float()
        known = ~torch.isnan(gold)
        squared = (logits.squeeze(-1) - torch.nan_to_num(gold)) ** 2
        return (squared * known).sum() / known.sum().clamp_min(1)
    gold = labels.long()
    known = gold != UNLABELLED
    total = F.cross_entropy(logits, gold, ignore_index=UNLABELLED, reduction="sum")
    return total / known.sum().clamp_min(1)

def represent(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    """The vector(s) COS-NCE compares: all tokens `[B, L, D]`, the [CLS] vector, or the masked mean."""
    if mode == "tokens":
        return hidden
    if mode == "cls":
        return hidden[:, 0]
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)
