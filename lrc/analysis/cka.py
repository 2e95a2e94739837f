"""Linear CKA between every teacher and student layer, by minibatch unbiased HSIC (memory batch^2, never n^2)."""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import LRCError
from .common import _jsonable, _one_thread, _same_rows
from .representations import Representations


def _u_center(gram: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """U-centring (Szekely & Rizzo 2014): <U(K), U(L)> / (n (n - 3)) is the unbiased HSIC of Song et al. 2012.

    Works on one [n, n] Gram matrix or a stack [..., n, n].
    """
    n = gram.shape[-1]
    k = gram if inplace else gram.clone()
    k.diagonal(dim1=-2, dim2=-1).zero_()
    row = k.sum(-1, keepdim=True)
    total = row.sum(-2, keepdim=True)
    u = k - row / (n - 2) - row.transpose(-1, -2) / (n - 2) + total / ((n - 1) * (n - 2))
    u.diagonal(dim1=-2, dim2=-1).zero_()
    return u


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> float:
    """The unbiased HSIC estimator of two n x n Gram matrices (n >= 4), by Song et al.'s formula (for tests)."""
    n = k.shape[0]
    k, l = k.double().clone(), l.double().clone()
    k.fill_diagonal_(0)
    l.fill_diagonal_(0)
    one = torch.ones(n, 1, dtype=k.dtype)
    trace = torch.trace(k @ l)
    middle = (one.T @ k @ one) * (one.T @ l @ one) / ((n - 1) * (n - 2))
    last = 2.0 / (n - 2) * (one.T @ k @ l @ one)
    return float((trace + middle - last) / (n * (n - 3)))


def _cka_matrix(teacher: Representations | Sequence[np.ndarray], student: Representations | Sequence[np.ndarray],
                batch_size: int = 256, seed: int = 0) -> dict[str, Any]:
    start = time.perf_counter()
    if isinstance(teacher, Representations) and isinstance(student, Representations):
        _same_rows(teacher, student)
        rep = teacher.representation
    else:
        rep = None
    t_layers = teacher.layers if isinstance(teacher, Representations) else list(teacher)
    s_layers = student.layers if isinstance(student, Representations) else list(student)
    rows = t_layers[0].shape[0]
    if any(x.shape[0] != rows for x in list(t_layers) + list(s_layers)):
        raise LRCError("CKA needs the same rows (examples) in every layer of both models")
    if rows < 4:
        raise LRCError(f"linear CKA needs at least 4 examples; got {rows}")
    order = np.random.default_rng(seed).permutation(rows)
    chunks = [c for c in np.array_split(order, max(1, math.ceil(rows / max(4, batch_size)))) if len(c) >= 4]
    ts = torch.zeros(len(t_layers), len(s_layers), dtype=torch.float64)
    tt = torch.zeros(len(t_layers), dtype=torch.float64)
    ss = torch.zeros(len(s_layers), dtype=torch.float64)
    t_size = torch.zeros(len(t_layers), dtype=torch.float64)
    s_size = torch.zeros(len(s_layers), dtype=torch.float64)
    for idx in chunks:
        b = len(idx)
        scale = 1.0 / (b * (b - 3))
        ut, t_norm = _stacked_u(t_layers, idx)
        us, s_norm = _stacked_u(s_layers, idx)
        ts += (ut @ us.T).double() * scale
        tt += (ut * ut).sum(-1).double() * scale
        ss += (us * us).sum(-1).double() * scale
        t_size += t_norm * scale
        s_size += s_norm * scale
    # a layer whose vectors are the same for every example, like the [CLS] row of the embedding layer, has no
    # similarity structure: HSIC(K, K) / (tr K)^2 ~ (spread / length)^4 vanishes (float32 noise of 1e-7 gives
    # 1e-28), and CKA is undefined there (NaN). A real spread of 1e-3 of the length (1e-12) still counts.
    t_ok = tt > 1e-20 * t_size.clamp_min(1e-300)
    s_ok = ss > 1e-20 * s_size.clamp_min(1e-300)
    denom = torch.sqrt(tt.clamp_min(0)[:, None] * ss.clamp_min(0)[None, :])
    valid = t_ok[:, None] & s_ok[None, :] & (denom > 0)
    cka = torch.where(valid, ts / denom.clamp_min(1e-300), torch.full_like(ts, float("nan")))
    return {
        "teacher_layers": list(range(len(t_layers))), "student_layers": list(range(len(s_layers))),
        "cka": _jsonable(cka.numpy()), "representation": rep, "num_rows": int(rows),
        "num_examples": teacher.num_examples if isinstance(teacher, Representations) else int(rows),
        "batch_size": int(max(len(c) for c in chunks)), "num_batches": len(chunks),
        "seconds": time.perf_counter() - start,
    }


def cka_matrix(teacher: Representations | Sequence[np.ndarray], student: Representations | Sequence[np.ndarray],
               batch_size: int = 256, seed: int = 0) -> dict[str, Any]:
    """Minibatch linear CKA between every teacher layer (rows) and every student layer (columns).

    Takes Representations (rows must match) or plain lists of [R, D] arrays. Rows are shuffled with `seed`
    and split into ceil(R / batch_size) near-equal minibatches; HSIC estimates are averaged over them.
    """
    with _one_thread():
        return _cka_matrix(teacher, student, batch_size, seed)


def _stacked_u(layers: Sequence[np.ndarray], idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """U-centred linear Gram matrices of one minibatch, one flattened row per layer ([layers, b*b]), and the
    size (trace of the raw Gram matrix, squared) a vanishing HSIC(K, K) is judged against.

    The features are centred over the minibatch (in float64) before the Gram matrix is formed in float32: the
    large common offset of a language model's hidden states would otherwise eat float32's precision, and
    U-centring removes exactly that offset anyway (it cancels every term of the form a_i + b_j).
    """
    grams, sizes = [], []
    for x in layers:
        xb = torch.from_numpy(np.ascontiguousarray(x[idx])).double()
        sizes.append(xb.pow(2).sum() ** 2)
        xc = (xb - xb.mean(0, keepdim=True)).float()
        grams.append(xc @ xc.T)
    u = _u_center(torch.stack(grams), inplace=True)
    return u.reshape(len(layers), -1), torch.stack(sizes)
