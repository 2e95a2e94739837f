"""Layer alignment between a teacher and a student: angles, linear CKA, 2-D maps, training snapshots.

No Gradio here; `app/layers.py` only draws what this module returns (plain lists and floats, JSON-safe).

Layers are numbered the Hugging Face way: 0 is the embedding output, k is the output of transformer layer k
(`hidden_states[k]`). A run's layer map says student layer m (1-based) learned from teacher layer layer_map[m-1].

Representations (`representation`):
    cls     the [CLS] vector, one row per example
    mean    the masked mean over real tokens, one row per example
    tokens  every real (non-padding) token, one row per token; rows remember their example and position

Angular similarity (`similarity_matrix`)
    For every (teacher layer i, student layer j): the mean cosine between the teacher's vector of an example and
    the student's vector of the *same* example (`cos_own`), and the mean cosine between the student's vector of
    an example and the teacher's vectors of *all other* examples (`cos_neg`, every other example of the sample,
    not a random K). `margin = cos_own - cos_neg` is the gap COS-NCE tries to open; angular distance is
    g = 1 - cos. In `tokens` mode a token is compared with the other examples' tokens at the same position
    (both real), exactly as the in-batch COS-NCE loss does, and averaged per example first, then over examples.

    Widths. A cosine needs both vectors in one space, so the student's vector goes through a learned projection
    W (student width -> teacher width) first:
      * student layer j uses its own projection W_j (every transformer layer of the student is mapped, since a
        layer map has one entry per student layer), also against teacher layers it was not mapped to: W_j is
        the learned change of basis from that student layer to the teacher's space, so the student layer's
        column of the heatmap shows where in the teacher that layer landed;
      * the embedding layer (never distilled) and any other layer without a projection borrow the projection
        of the nearest mapped student layer (`projection_source` records which, e.g. "W1 (borrowed)");
      * a run without projections (COS-NCE off, fine-tuning baselines) is compared directly when the widths
        match ("identity") and is marked not comparable (NaN) when they differ.
    Linear CKA needs no projection (it compares the two models' example-by-example similarity structure and
    is width-free), so the CKA matrix uses the raw hidden states for every pair.

Linear CKA (`cka_matrix`)
    Minibatch CKA (Nguyen, Raghu & Kornblith 2021): the rows are split into minibatches of `batch_size`, the
    unbiased HSIC estimator (Song et al. 2012) of every (teacher layer, student layer) pair and of every layer
    with itself is averaged over minibatches, and CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)). Memory is
    batch_size^2 per layer, never n x n, so it scales to any number of examples (or tokens). A layer whose
    vector is the same for every example (the [CLS] row of the embedding layer) has no similarity structure:
    its CKA is NaN ("n/a"), not a number made of rounding noise.

2-D maps (`Map2D`, `RunAnalysis.scatter`)
    Fit UMAP (or PCA, the fast fallback) on the teacher's vectors of one layer, then *transform* the student's
    projected vectors of a layer into that same plane: both models sit in one picture, and because the
    teacher's fit is fixed (and cached), the trained and the initial student land in the same coordinates.
    Vectors are L2-normalised first (COS-NCE only cares about angles). In `tokens` mode a point is an example:
    the mean of its token vectors.

Snapshots (`probe_alignment`, `read_snapshots`)
    With `snapshot_every: N`, the trainer calls `probe_alignment` on a fixed probe batch at step 0 and every
    N steps and writes {"type": "snapshot", "step", "layers", "cos_own", "cos_neg", "margin"} to events.jsonl.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import LRCError

REPRESENTATIONS = ("cls", "mean", "tokens")
METHODS = ("umap", "pca")
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# progress(fraction done of the current stage, what the stage is): long views report as they go, so a UI can draw
# a progress bar (the Layers tab's forward passes over 2,048 examples take about a minute on a CPU)
Progress = Callable[[float, str], None]
_EPS = 1e-8
# The layer vectors a RunAnalysis keeps, per run (an app keeps 3 runs). `tokens` mode keeps every token of every
# layer, so without a budget every sample size a user tries would stay in memory (for 1,000 SST-2 examples about
# 0.4 GB: the 6-layer MiniLM teacher and a 2-layer student, 25k token rows each).
DEFAULT_CACHE_MB = 1024


# ---- threads ----------------------------------------------------------------------------------------------------

_THREADS_LOCK = threading.Lock()


class _one_thread:
    """Run the matrix statistics (cosines, CKA) on one intra-op thread, then restore the setting.

    They are many small, memory-bound tensor ops; a second thread gains nothing there and, when the cores are
    busy (a training run next to the app, other processes), every op waits for it: measured on 2 shared cores,
    the CKA of a 256-example `tokens` sample took 15-28 s with 2 threads and 0.45 s with one.
    """

    def __enter__(self):
        _THREADS_LOCK.acquire()
        self.previous = torch.get_num_threads()
        if self.previous != 1:
            torch.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        if self.previous != 1:
            torch.set_num_threads(self.previous)
        _THREADS_LOCK.release()


# ---- representations ----------------------------------------------------------------------------------------------

def _check_representation(representation: str) -> str:
    if representation not in REPRESENTATIONS:
        raise LRCError(f"representation must be one of {', '.join(REPRESENTATIONS)}; got {representation!r}")
    return representation


def _rows(hidden: torch.Tensor, mask: torch.Tensor, representation: str):
    """[B, L, D] hidden states -> (rows [R, D], example [R], position [R]) for one representation."""
    b = hidden.shape[0]
    if representation == "tokens":
        where = mask.bool().nonzero(as_tuple=False)  # [R, 2]: example, position (row-major, so grouped)
        return hidden[where[:, 0], where[:, 1]], where[:, 0], where[:, 1]
    ex = torch.arange(b, device=hidden.device)
    pos = torch.zeros(b, dtype=torch.long, device=hidden.device)
    if representation == "cls":
        return hidden[:, 0], ex, pos
    m = mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0), ex, pos


@dataclass
class Representations:
    """One model's vectors at every layer (0 = embeddings) for a set of examples, plus its logits."""

    layers: list[np.ndarray]  # [R, D] float32 per layer
    row_example: np.ndarray  # [R] which example a row belongs to
    row_position: np.ndarray  # [R] token position (0 for cls / mean)
    logits: np.ndarray  # [n, C]
    representation: str
    seconds: float = 0.0

    @property
    def num_examples(self) -> int:
        return int(self.logits.shape[0])

    @property
    def nbytes(self) -> int:
        return sum(x.nbytes for x in self.layers) + self.row_example.nbytes + self.row_position.nbytes \
            + self.logits.nbytes

    @property
    def num_layers(self) -> int:
        """Transformer layers (the embedding layer 0 not counted)."""
        return len(self.layers) - 1

    @property
    def width(self) -> int:
        return int(self.layers[0].shape[1])

    def example_vectors(self, layer: int) -> np.ndarray:
        """One vector per example: the rows themselves, or in `tokens` mode the mean of an example's tokens."""
        x = self.layers[layer]
        if x.shape[0] == self.num_examples and self.representation != "tokens":
            return x
        out = np.zeros((self.num_examples, x.shape[1]), dtype=np.float64)
        np.add.at(out, self.row_example, x)
        counts = np.bincount(self.row_example, minlength=self.num_examples).clip(min=1)
        return (out / counts[:, None]).astype(np.float32)


@torch.no_grad()
def collect_all(model, batches: Iterable[dict[str, torch.Tensor]], representations: Sequence[str] = REPRESENTATIONS,
                device: torch.device | str | None = None, order: Sequence[int] | None = None,
                progress: Progress | None = None, label: str = "forward pass") -> dict[str, Representations]:
    """One pass of `model` over `batches`, keeping every layer's vectors in each of `representations`.

    order: when the batches hold the examples in another order than the caller's (sorted by length, so little
    is padding), order[i] is the caller's index of the i-th example seen; rows and logits come back in the
    caller's order (rows grouped by example, then by position). progress, when given, hears after every batch.

    The attention masks say up front how many rows each example has, so every output array is allocated once at
    its final size and each batch's rows are written straight to their final place: no per-batch pieces to join
    and reorder afterwards. In `tokens` mode those pieces and copies had tripled the peak memory (4,000 SST-2
    examples: +3.9 GB for a 1.1 GB result), most of it left in the heap after they were freed.
    """
    for r in representations:
        _check_representation(r)
    start = time.perf_counter()
    batches = batches if isinstance(batches, (list, tuple)) else list(batches)
    lengths = np.concatenate([b["attention_mask"].sum(1).cpu().numpy() for b in batches]).astype(np.int64) \
        if batches else np.zeros(0, dtype=np.int64)
    if lengths.size == 0:
        raise LRCError("no examples to analyse")
    total = len(lengths)
    perm = np.arange(total) if order is None else np.asarray(order, dtype=np.int64)
    if perm.shape != (total,) or not np.array_equal(np.sort(perm), np.arange(total)):
        raise LRCError(f"order must be a permutation of the {total} examples")
    caller_lengths = np.empty_like(lengths)
    caller_lengths[perm] = lengths
    token_start = np.concatenate([[0], np.cumsum(caller_lengths)[:-1]])  # first row of each caller example
    n_rows = {r: int(lengths.sum()) if r == "tokens" else total for r in representations}
    layers: dict[str, list[np.ndarray] | None] = {r: None for r in representations}
    row_example = {r: np.empty(n_rows[r], dtype=np.int64) for r in representations}
    row_position = {r: np.empty(n_rows[r], dtype=np.int64) for r in representations}
    logits: np.ndarray | None = None
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    if progress is not None:
        progress(0.0, f"{label}: starting")
    offset = 0
    try:
        for done, batch in enumerate(batches, start=1):
            inputs = {k: batch[k].to(device) for k in _MODEL_INPUTS if k in batch}
            out = model(**inputs, output_hidden_states=True)
            mask = inputs["attention_mask"]
            caller = perm[offset: offset + mask.shape[0]]
            batch_logits = out.logits.float().cpu().numpy()
            if logits is None:
                logits = np.empty((total, batch_logits.shape[-1]), dtype=np.float32)
            logits[caller] = batch_logits
            for r in representations:
                if layers[r] is None:
                    width = out.hidden_states[0].shape[-1]
                    layers[r] = [np.empty((n_rows[r], width), dtype=np.float32) for _ in out.hidden_states]
                if len(out.hidden_states) != len(layers[r]):
                    raise LRCError("the model returned a different number of hidden states between batches")
                dest = None
                for k, hidden in enumerate(out.hidden_states):
                    rows, ex, pos = _rows(hidden.float(), mask, r)
                    if dest is None:
                        ex_np, pos_np = ex.cpu().numpy(), pos.cpu().numpy()
                        if r == "tokens":  # rows come grouped by example, by position: rank within the example
                            counts = np.bincount(ex_np, minlength=mask.shape[0])
                            rank = np.arange(len(ex_np)) - (np.cumsum(counts) - counts)[ex_np]
                            dest = token_start[caller[ex_np]] + rank
                        else:
                            dest = caller[ex_np]
                        row_example[r][dest] = caller[ex_np]
                        row_position[r][dest] = pos_np
                    layers[r][k][dest] = rows.cpu().numpy()
            offset += int(mask.shape[0])
            if progress is not None:
                progress(done / len(batches), f"{label}: batch {done}/{len(batches)}")
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start
    return {r: Representations(layers=layers[r], row_example=row_example[r], row_position=row_position[r],
                               logits=logits, representation=r, seconds=seconds) for r in representations}


def collect_representations(model, batches: Iterable[dict[str, torch.Tensor]], representation: str = "cls",
                            device: torch.device | str | None = None,
                            order: Sequence[int] | None = None) -> Representations:
    """Run `model` over `batches` (dicts with input_ids/attention_mask/...) and keep every layer's vectors."""
    return collect_all(model, batches, (representation,), device, order)[representation]


# ---- projections ----------------------------------------------------------------------------------------------------

@dataclass
class Projector:
    """How each student layer is brought to the teacher's width for a cosine.

    maps: per mapped student layer (1-based) a (W [Dt, Ds], b [Dt]) pair; empty when the run has none.
    """

    student_width: int
    teacher_width: int
    maps: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def from_module(cls, projections, num_mapped: int, student_width: int, teacher_width: int) -> "Projector":
        """From an `lrc.models.Projections` (per-layer or shared) covering student layers 1..num_mapped."""
        maps = {}
        if projections is not None:
            for m in range(1, num_mapped + 1):
                lin = projections.maps[0 if projections.shared else m - 1]
                maps[m] = (lin.weight.detach().float().cpu().numpy(), lin.bias.detach().float().cpu().numpy())
        return cls(student_width, teacher_width, maps)

    @classmethod
    def from_file(cls, path: str | os.PathLike, num_mapped: int, student_width: int,
                  teacher_width: int) -> "Projector":
        """From a run's projections.safetensors (keys maps.<i>.weight / maps.<i>.bias, metadata `shared`)."""
        from safetensors import safe_open

        maps = {}
        with safe_open(str(path), framework="pt") as fh:
            shared = (fh.metadata() or {}).get("shared", "False") == "True"
            keys = set(fh.keys())
            for m in range(1, num_mapped + 1):
                i = 0 if shared else m - 1
                if f"maps.{i}.weight" not in keys:
                    continue
                maps[m] = (fh.get_tensor(f"maps.{i}.weight").float().numpy(),
                           fh.get_tensor(f"maps.{i}.bias").float().numpy())
        return cls(student_width, teacher_width, maps)

    def source(self, student_layer: int) -> str | None:
        """"W<j>" own projection, "W<k> (borrowed)", "identity", or None when not comparable."""
        if student_layer in self.maps:
            return f"W{student_layer}"
        if self.maps:
            nearest = min(self.maps, key=lambda m: (abs(m - student_layer), m))
            return f"W{nearest} (borrowed)"
        if self.student_width == self.teacher_width:
            return "identity"
        return None

    def apply(self, student_layer: int, rows: np.ndarray) -> np.ndarray | None:
        src = self.source(student_layer)
        if src is None:
            return None
        if src == "identity":
            return rows
        w, b = self.maps[int(src.split()[0][1:])]
        return (torch.from_numpy(rows) @ torch.from_numpy(w).T + torch.from_numpy(b)).numpy()


# ---- cosines --------------------------------------------------------------------------------------------------------

class _TeacherSide:
    """A teacher layer prepared once for many student layers: unit rows and their per-position sums."""

    def __init__(self, rows: torch.Tensor, position: torch.Tensor):
        self.unit = F.normalize(rows.float(), dim=-1, eps=_EPS)
        npos = int(position.max()) + 1 if position.numel() else 1
        self.sum = torch.zeros(npos, self.unit.shape[1]).index_add_(0, position, self.unit)
        self.count = torch.bincount(position, minlength=npos).double()


def _example_cosines(s: torch.Tensor, t: torch.Tensor | _TeacherSide, example: torch.Tensor,
                     position: torch.Tensor, n: int, unit: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Per example: mean cos(own teacher row, student row), and mean cos to other examples' teacher rows.

    Rows are aligned (row r of s and t is the same example and position). A student row is compared with the
    teacher rows of every *other* example at the same position, in O(R * D) through per-position sums
    (float32 dot products, float64 sums).
    """
    side = t if isinstance(t, _TeacherSide) else _TeacherSide(t, position)
    if not unit:
        s = F.normalize(s.float(), dim=-1, eps=_EPS)
    # row-wise dot products without an [R, D] temporary: a dot per row, and one small [R, positions] matmul
    own_rows = torch.linalg.vecdot(s, side.unit).double()
    neg_num = (s @ side.sum.T).gather(1, position.unsqueeze(1)).squeeze(1).double() - own_rows
    neg_cnt = side.count[position] - 1.0
    zeros = torch.zeros(n, dtype=torch.float64)
    rows_per = zeros.clone().index_add_(0, example, torch.ones_like(own_rows))
    own = zeros.clone().index_add_(0, example, own_rows) / rows_per.clamp_min(1.0)
    neg_den = zeros.clone().index_add_(0, example, neg_cnt)
    neg = zeros.clone().index_add_(0, example, neg_num) / neg_den.clamp_min(1.0)
    neg = torch.where(neg_den > 0, neg, torch.full_like(neg, float("nan")))
    return own, neg


def _nanmean(x: torch.Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else float("nan")


def _similarity_matrix(teacher: Representations, student: Representations, projector: Projector,
                       teacher_layers: Sequence[int] | None = None,
                       student_layers: Sequence[int] | None = None) -> dict[str, Any]:
    _same_rows(teacher, student)
    start = time.perf_counter()
    tl = list(range(len(teacher.layers))) if teacher_layers is None else list(teacher_layers)
    sl = list(range(len(student.layers))) if student_layers is None else list(student_layers)
    n = teacher.num_examples
    ex, pos = torch.from_numpy(teacher.row_example), torch.from_numpy(teacher.row_position)
    own = np.full((len(tl), len(sl)), np.nan)
    neg = np.full((len(tl), len(sl)), np.nan)
    # the student side (fewer layers) is prepared once and each teacher layer one at a time, so only one prepared
    # teacher layer is in memory at once (tokens mode: 150 MB a layer for 4,000 SST-2 examples)
    sources = [projector.source(j) for j in sl]
    students: dict[int, torch.Tensor] = {}
    for c, j in enumerate(sl):
        projected = projector.apply(j, student.layers[j])
        if projected is not None:
            students[c] = F.normalize(torch.from_numpy(np.ascontiguousarray(projected)).float(), dim=-1, eps=_EPS)
    for r, i in enumerate(tl):
        if not students:
            break
        side = _TeacherSide(torch.from_numpy(teacher.layers[i]), pos)
        for c, s in students.items():
            o, g = _example_cosines(s, side, ex, pos, n, unit=True)
            own[r, c], neg[r, c] = _nanmean(o), _nanmean(g)
        del side
    return {
        "teacher_layers": tl, "student_layers": sl,
        "cos_own": _jsonable(own), "cos_neg": _jsonable(neg), "margin": _jsonable(own - neg),
        "angular_own": _jsonable(1.0 - own), "angular_neg": _jsonable(1.0 - neg),
        "projection_source": sources, "representation": teacher.representation,
        "num_examples": n, "num_rows": int(teacher.row_example.shape[0]),
        "seconds": time.perf_counter() - start,
    }


def similarity_matrix(teacher: Representations, student: Representations, projector: Projector,
                      teacher_layers: Sequence[int] | None = None,
                      student_layers: Sequence[int] | None = None) -> dict[str, Any]:
    """Mean cosine (own example, other examples), margin and angular distance for every layer pair.

    Matrices are lists of rows: [teacher layer][student layer]. NaN marks a pair that is not comparable.
    """
    with _one_thread():
        return _similarity_matrix(teacher, student, projector, teacher_layers, student_layers)


def mapped_cosines(similarity: dict[str, Any], layer_map: Sequence[int]) -> dict[str, Any]:
    """The matched pairs of a similarity matrix: per student layer m, its teacher layer layer_map[m-1]."""
    tl, sl = similarity["teacher_layers"], similarity["student_layers"]
    rows = {"student_layers": [], "teacher_layers": [], "cos_own": [], "cos_neg": [], "margin": []}
    for m, n in enumerate(layer_map, start=1):
        if m not in sl or n not in tl:
            continue
        r, c = tl.index(n), sl.index(m)
        rows["student_layers"].append(m)
        rows["teacher_layers"].append(n)
        for key in ("cos_own", "cos_neg", "margin"):
            rows[key].append(similarity[key][r][c])
    return rows


def _same_rows(a: Representations, b: Representations) -> None:
    if a.representation != b.representation:
        raise LRCError(f"representations differ: {a.representation} vs {b.representation}")
    if a.row_example.shape != b.row_example.shape or not np.array_equal(a.row_example, b.row_example) \
            or not np.array_equal(a.row_position, b.row_position):
        raise LRCError("teacher and student representations are not of the same examples and tokens "
                       "(the two models must share a tokenizer)")


def _jsonable(x: np.ndarray) -> list:
    """Nested lists of floats; NaN stays NaN (json.dumps writes it, the figures show it as a gap)."""
    return [[float(v) for v in row] for row in np.asarray(x, dtype=np.float64)]


# ---- linear CKA ---------------------------------------------------------------------------------------------------

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


# ---- 2-D maps -------------------------------------------------------------------------------------------------------

def _unit_rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)


class Map2D:
    """A 2-D map fitted on one set of vectors (the teacher's) that places other vectors (the student's) in it.

    method "umap" (umap-learn, deterministic with `seed`; the first call in a process pays numba's JIT compile)
    or "pca" (scikit-learn, instant). Vectors are L2-normalised first: the maps show directions, as COS-NCE does.
    """

    def __init__(self, method: str = "umap", seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1):
        if method not in METHODS:
            raise LRCError(f"map method must be one of {', '.join(METHODS)}; got {method!r}")
        self.method, self.seed, self.n_neighbors, self.min_dist = method, seed, n_neighbors, min_dist
        self.model = None
        self.fit_seconds = 0.0

    def fit(self, x: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        x = _unit_rows(x)
        n = x.shape[0]
        if n < 3:
            raise LRCError(f"a 2-D map needs at least 3 examples; got {n}")
        if self.method == "umap" and n >= 10:
            import warnings

            import umap

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.model = umap.UMAP(n_components=2, n_neighbors=min(self.n_neighbors, n - 1),
                                       min_dist=self.min_dist, random_state=self.seed, transform_seed=self.seed,
                                       n_jobs=1, init="spectral" if n > 16 else "random")
                xy = self.model.fit_transform(x)
        else:
            from sklearn.decomposition import PCA

            self.method = "pca" if self.method == "umap" else self.method  # too few points for UMAP
            self.model = PCA(n_components=2, svd_solver="full", random_state=self.seed).fit(x)
            xy = self.model.transform(x)
        self.fit_seconds = time.perf_counter() - start
        return np.asarray(xy, dtype=np.float64)

    def transform(self, x: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise LRCError("fit the map before transforming into it")
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(self.model.transform(_unit_rows(x)), dtype=np.float64)


_WARM = {"thread": None}


def warm_up_umap(background: bool = True) -> threading.Thread | None:
    """Compile umap-learn's numba code once per process (a tiny fit and transform), in a daemon thread.

    The first UMAP of a process spends most of its time in numba's JIT compile (measured 25-40 s on 2 busy
    CPU cores, then about 1 s per map). The app starts this when the Layers tab is first used, so the compile
    overlaps loading the models; a later `Map2D("umap")` reuses the compiled code.
    """
    if _WARM["thread"] is not None:
        return _WARM["thread"]

    def work():
        try:
            x = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
            m = Map2D("umap", seed=0)
            m.fit(x)
            m.transform(x[:5])
        except Exception:  # only a speed-up: a failure shows up (with its message) in the real map
            pass

    if not background:
        work()
        _WARM["thread"] = threading.current_thread()
        return None
    thread = threading.Thread(target=work, name="umap-warm-up", daemon=True)
    _WARM["thread"] = thread
    thread.start()
    return thread


# ---- snapshots during training --------------------------------------------------------------------------------------

@torch.no_grad()
def probe_alignment(student, projections, teacher, batch: dict[str, torch.Tensor], layer_map: Sequence[int],
                    representation: str = "tokens") -> dict[str, Any]:
    """Matched-layer cosines on a fixed probe batch (called by the trainer every `snapshot_every` steps).

    Returns {"layers": teacher layer per mapped student layer, "cos_own": mean cosine of the projected student
    vector to its own example's teacher vector, "cos_neg": to the other probe examples' teacher vectors,
    "margin": cos_own - cos_neg, "probe_examples": n}, one entry per mapped layer, plain floats.
    The student's (and teacher's) train/eval mode is restored afterwards.
    """
    _check_representation(representation)
    inputs = {k: batch[k] for k in _MODEL_INPUTS if k in batch}
    mask = inputs["attention_mask"]
    modes = [(m, m.training) for m in (student, teacher, projections) if m is not None]
    try:
        for m, _ in modes:
            m.eval()
        s_out = student(**inputs, output_hidden_states=True)
        teacher_sides = _probe_teacher(teacher, inputs, layer_map, representation)
        n = int(mask.shape[0])
        own, neg = [], []
        for m, layer in enumerate(layer_map):
            s_hidden = s_out.hidden_states[m + 1].float()
            if projections is not None:
                s_hidden = projections(m, s_hidden).float()
            s_rows, ex, pos = _rows(s_hidden, mask, representation)
            side = teacher_sides[layer]
            if s_rows.shape[-1] != side.unit.shape[-1]:
                own.append(float("nan"))
                neg.append(float("nan"))
                continue
            o, g = _example_cosines(s_rows.cpu(), side, ex.cpu(), pos.cpu(), n)
            own.append(_nanmean(o))
            neg.append(_nanmean(g))
    finally:
        for m, was in modes:
            m.train(was)
    return {"layers": [int(x) for x in layer_map], "cos_own": own, "cos_neg": neg,
            "margin": [a - b for a, b in zip(own, neg)], "probe_examples": n}


_PROBE_CACHE: dict[str, Any] = {}


def _probe_teacher(teacher, inputs: dict[str, torch.Tensor], layer_map: Sequence[int],
                   representation: str) -> dict[int, _TeacherSide]:
    """The teacher's side of a probe, computed once per (teacher, probe batch) and reused by later snapshots:
    the teacher is frozen during distillation, so only the student's forward is needed each time."""
    import weakref

    key = (id(teacher), representation, tuple(layer_map),
           hash(inputs["input_ids"].cpu().numpy().tobytes()), tuple(inputs["input_ids"].shape))
    cached = _PROBE_CACHE.get("entry")
    if cached is not None and cached[0] == key and cached[1]() is teacher:
        return cached[2]
    out = teacher(**inputs, output_hidden_states=True)
    mask = inputs["attention_mask"]
    sides = {}
    for layer in set(layer_map):
        rows, _ex, pos = _rows(out.hidden_states[layer].float(), mask, representation)
        sides[layer] = _TeacherSide(rows.cpu(), pos.cpu())
    _PROBE_CACHE["entry"] = (key, weakref.ref(teacher), sides)  # one entry: the current run's probe
    return sides


def read_snapshots(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The snapshot events of a run, in step order (a later snapshot of the same step wins)."""
    by_step: dict[int, dict[str, Any]] = {}
    for ev in events:
        if ev.get("type") == "snapshot" and isinstance(ev.get("cos_own"), list) and "phase" not in ev:
            by_step[int(ev.get("step", 0))] = ev
    out = []
    for step in sorted(by_step):
        ev = by_step[step]
        own, neg = ev["cos_own"], ev.get("cos_neg") or [float("nan")] * len(ev["cos_own"])
        out.append({"step": step, "layers": ev.get("layers") or list(range(1, len(own) + 1)), "cos_own": own,
                    "cos_neg": neg, "margin": ev.get("margin") or [a - b for a, b in zip(own, neg)]})
    return out


# ---- one run, cached --------------------------------------------------------------------------------------------

STUDENT_VARIANTS = ("trained", "initial")


@dataclass
class _Models:
    teacher: Any
    tokenizer: Any
    task: Any
    layer_map: list[int]
    students: dict[str, Any] = field(default_factory=dict)
    projectors: dict[str, Projector] = field(default_factory=dict)


class RunAnalysis:
    """Every layer view of one distillation run, computed on first use and cached per run, variant and layer.

    Results are plain dicts with `num_examples`, `seconds` (what computing it took, including the model
    forwards it needed the first time) and `cached` (whether this call was served from the cache).
    The cache is keyed by the model files' modification times, so a run that is re-trained is recomputed.
    """

    def __init__(self, run_path: str | os.PathLike, data_dir: str | None = None, device: str = "cpu",
                 max_seq_length: int | None = None, max_cache_bytes: int | None = None):
        """max_cache_bytes: the layer vectors kept for all sample sizes together; past it, the least recently
        used sizes go first, but the size in use always stays. Default: DEFAULT_CACHE_MB megabytes."""
        from .runs import read_json

        self.path = Path(run_path)
        self.config: dict[str, Any] = read_json(self.path / "config.json", {}) or {}
        self.summary: dict[str, Any] = read_json(self.path / "summary.json", {}) or {}
        if not self.config:
            raise LRCError(f"{self.path} is not a run folder (no config.json)")
        if self.config.get("kind") == "teacher":
            raise LRCError(f"{self.path.name} is a teacher run; pick a distillation run to compare layers")
        if not (self.path / "student" / "config.json").exists():
            raise LRCError(f"run {self.path.name} has no saved student yet")
        self.data_dir = data_dir
        self.device = torch.device(device)
        self.max_seq_length = max_seq_length or int(self.config.get("max_seq_length") or 128)
        self.seed = int(self.config.get("seed", 42))
        self._models: _Models | None = None
        self._cache: dict[tuple, Any] = {}
        self._reps_bytes: OrderedDict[tuple, int] = OrderedDict()  # the cached layer vectors, least recent first
        self.max_cache_bytes = DEFAULT_CACHE_MB * 2**20 if max_cache_bytes is None else int(max_cache_bytes)
        if self.max_cache_bytes < 0:
            raise LRCError(f"max_cache_bytes must be >= 0 (0 keeps only the sample in use); got {max_cache_bytes}")
        self._lock = threading.RLock()

    # -- identity and metadata --
    def fingerprint(self) -> tuple:
        """Changes whenever the saved student or projections change (a resumed or re-run run)."""
        parts = []
        for p in (self.path / "student" / "model.safetensors", self.path / "student" / "pytorch_model.bin",
                  self.path / "projections.safetensors"):
            parts.append(p.stat().st_mtime_ns if p.exists() else 0)
        return tuple(parts)

    @property
    def teacher_spec(self) -> str:
        """The teacher the run distilled from: the summary's, else the `teacher_ready` event of a run still
        going, else the configured one. A run that names none yet (its default teacher is still being
        fine-tuned) is refused rather than compared with the raw bundled backbone."""
        spec = self.summary.get("teacher")
        if not spec:
            from .runs import Run

            ready = [e.get("path") for e in Run(self.path).iter_events() if e.get("type") == "teacher_ready"]
            spec = ready[-1] if ready else self.config.get("teacher")
        if not spec:
            raise LRCError(f"run {self.path.name} does not record its teacher yet; wait until its teacher is ready")
        if not Path(spec).is_absolute() and not Path(spec).exists():
            for base in (self.path.parent, self.path.parent.parent):
                if (base / spec).exists():
                    return str(base / spec)
        return spec

    @property
    def layer_map(self) -> list[int]:
        return list(self.models.layer_map)

    def shape(self) -> dict[str, Any]:
        """Layer counts and layer map from the saved configs alone (no weights loaded): for pickers."""
        from .models import resolve_model_path, uniform_layer_map
        from .runs import read_json

        if self._models is not None:
            t = self._models.teacher.config.num_hidden_layers
        else:
            t_cfg = read_json(Path(resolve_model_path(self.teacher_spec)) / "config.json", {}) or {}
            t = int(t_cfg.get("num_hidden_layers") or t_cfg.get("n_layers") or 0)
        s_cfg = read_json(self.path / "student" / "config.json", {}) or {}
        s = int(s_cfg.get("num_hidden_layers") or (self.config.get("student") or {}).get("layers") or 0)
        layer_map = self.summary.get("layer_map")
        if layer_map is None:
            layer_map = self.config.get("layer_map") or (uniform_layer_map(s, t) if s and t and s <= t else [])
        return {"teacher_layers": t, "student_layers": s, "layer_map": [int(x) for x in layer_map]}

    # -- loading --
    @property
    def models(self) -> _Models:
        with self._lock:
            if self._models is None:
                self._models = self._load()
            return self._models

    def _load(self) -> _Models:
        from .models import load_classifier, load_tokenizer, uniform_layer_map

        task = self._task()
        teacher = load_classifier(self.teacher_spec, task).to(self.device).eval()
        tokenizer = load_tokenizer(self.teacher_spec)
        layer_map = self.summary.get("layer_map")
        if layer_map is None:
            layer_map = self.config.get("layer_map") or uniform_layer_map(
                int(self.config.get("student", {}).get("layers", 4)), teacher.config.num_hidden_layers)
        return _Models(teacher, tokenizer, task, [int(x) for x in layer_map])

    def _task(self):
        from .tasks import get_task

        name = self.config.get("task", "sst2")
        if name != "custom" and not self.config.get("train_file"):
            return get_task(name)
        return self._data().task

    def student(self, variant: str = "trained"):
        """The trained student (run/student) or the untrained initial one, rebuilt from the run's config."""
        if variant not in STUDENT_VARIANTS:
            raise LRCError(f"student variant must be one of {', '.join(STUDENT_VARIANTS)}; got {variant!r}")
        m = self.models
        with self._lock:
            if variant not in m.students:
                if variant == "trained":
                    from .models import load_classifier

                    model = load_classifier(str(self.path / "student"), m.task)
                    projector = self._saved_projector(model, m)
                else:
                    model, projector = self._initial_student(m)
                m.students[variant] = model.to(self.device).eval()
                m.projectors[variant] = projector
            return m.students[variant], m.projectors[variant]

    def _saved_projector(self, student, m: _Models) -> Projector:
        path = self.path / "projections.safetensors"
        sw, tw = student.config.hidden_size, m.teacher.config.hidden_size
        if path.exists() and m.layer_map:
            return Projector.from_file(path, len(m.layer_map), sw, tw)
        return Projector(sw, tw)

    def _initial_student(self, m: _Models):
        """build_student with the run's shape and seed, plus the projections the Distiller starts from.

        With teacher-layer init (the default when widths match) the encoder is exactly the one training started
        from; with random init it is a fresh draw with the run's seed (the same distribution, maybe not the
        same numbers, since the trainer's RNG state at build time is not recorded).
        """
        from accelerate.utils import set_seed

        from .config import StudentConfig
        from .models import Projections, build_student

        shape = StudentConfig(**(self.config.get("student") or {}))
        set_seed(self.seed)
        student, _how = build_student(shape, m.teacher, m.task, m.layer_map)
        uses_reps = bool(self.config.get("use_cos_nce", True)) and float(self.config.get("alpha", 1.0)) > 0 \
            and bool(m.layer_map) and (self.path / "projections.safetensors").exists()
        if not uses_reps:
            return student, Projector(student.config.hidden_size, m.teacher.config.hidden_size)
        proj = Projections(student.config.hidden_size, m.teacher.config.hidden_size, len(m.layer_map),
                           shared=self.config.get("projection") == "shared")
        return student, Projector.from_module(proj, len(m.layer_map), student.config.hidden_size,
                                              m.teacher.config.hidden_size)

    # -- data --
    def _data(self):
        from .data import load_task_data

        cfg = self.config
        key = ("data",)
        if key not in self._cache:
            data_dir = self.data_dir or cfg.get("data_dir")
            if data_dir and not Path(data_dir).exists():
                data_dir = os.environ.get("GLUE_DIR") or data_dir
            custom = cfg.get("task") == "custom" or bool(cfg.get("train_file"))
            self._cache[key] = load_task_data(
                cfg.get("task", "sst2"), data_dir, 0, 0, self.seed, train_file=cfg.get("train_file"),
                dev_file=cfg.get("dev_file"), text_column=cfg.get("text_column", "text"),
                text_pair_column=cfg.get("text_pair_column"), label_column=cfg.get("label_column", "label"),
                splits=("train", "dev") if custom else ("dev",))
        return self._cache[key]

    def dev_size(self) -> int:
        """How many examples the main dev split has: the most any view can use."""
        return len(self._data().main_dev)

    def examples(self, n: int) -> dict[str, Any]:
        """The first n examples of a seeded shuffle of the main dev split (so 128 is a prefix of 256)."""
        key = ("examples", int(n))
        with self._lock:
            if key not in self._cache:
                dev = self._data().main_dev
                order = np.random.default_rng(self.seed).permutation(len(dev))[: max(1, int(n))]
                ds = dev.select(order.tolist())
                texts = [a if not b else f"{a} ‖ {b}" for a, b in zip(ds["text_a"], ds["text_b"])]
                self._cache[key] = {"dataset": ds, "texts": texts, "labels": list(ds["label"])}
            return self._cache[key]

    def _batches(self, n: int, batch_size: int = 64) -> tuple[list[dict[str, torch.Tensor]], np.ndarray]:
        """The sample tokenized and batched shortest first (little padding), with the order to undo that."""
        from .data import make_loader, tokenize

        key = ("batches", int(n))
        if key not in self._cache:
            tok = tokenize(self.examples(n)["dataset"], self.models.tokenizer, self.max_seq_length)
            order = np.argsort(np.asarray(tok["length"]), kind="stable")
            loader = make_loader(tok.select(order.tolist()), self.models.tokenizer, batch_size, shuffle=False)
            self._cache[key] = (list(loader), order)
        return self._cache[key]

    # -- representations --
    def representations(self, model: str, representation: str, n: int,
                        progress: Progress | None = None) -> Representations:
        """model: "teacher", "trained" or "initial". One forward pass fills all three representations."""
        _check_representation(representation)
        key = ("reps", model, int(n), self.fingerprint() if model == "trained" else None)
        with self._lock:
            if key in self._cache:
                self._reps_bytes.move_to_end(key)
            else:
                who = {"teacher": "teacher", "trained": "trained student", "initial": "initial student"}[model]
                if progress is not None:
                    progress(0.0, f"{who}: loading" if model == "teacher" else f"{who}: building")
                net = self.models.teacher if model == "teacher" else self.student(model)[0]
                if progress is not None:
                    progress(0.0, f"{n} examples: tokenizing")
                batches, order = self._batches(n)
                self._cache[key] = collect_all(net, batches, REPRESENTATIONS, self.device, order, progress,
                                               f"{who}, {n} examples")
                self._reps_bytes[key] = sum(r.nbytes for r in self._cache[key].values())
                self._evict(int(n))
            return self._cache[key][representation]

    def cache_bytes(self) -> int:
        """Bytes of layer vectors held now (the rest of the cache is small: matrices, 2-D maps, token ids)."""
        with self._lock:
            return sum(self._reps_bytes.values())

    def _evict(self, in_use: int) -> None:
        """Drop the least recently used sample sizes (all their vectors and token batches) until the budget holds.

        A size goes as a whole: every view needs the teacher's and the student's vectors together. The size in
        use stays whatever it weighs, or each view would recompute what the one before it needed. Results already
        computed from evicted vectors (matrices, 2-D maps) are small and stay cached.
        """
        while sum(self._reps_bytes.values()) > self.max_cache_bytes:
            oldest = next((key[2] for key in self._reps_bytes if key[2] != in_use), None)
            if oldest is None:
                return
            for key in [k for k in self._reps_bytes if k[2] == oldest]:
                del self._reps_bytes[key]
                self._cache.pop(key, None)
            self._cache.pop(("batches", oldest), None)

    def _cached(self, key: tuple, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            start = time.perf_counter()
            hit = key in self._cache
            if not hit:
                result = compute()
                result["seconds"] = time.perf_counter() - start
                self._cache[key] = result
            result = dict(self._cache[key])
            result["cached"] = hit
            result["lookup_seconds"] = time.perf_counter() - start
            return result

    # -- the views --
    def similarity(self, variant: str = "trained", representation: str = "cls", n: int = 256,
                   progress: Progress | None = None) -> dict[str, Any]:
        """The angular-similarity matrix (teacher layers x student layers) plus the layer map and mapped pairs."""
        key = ("similarity", variant, representation, int(n), self.fingerprint())

        def compute():
            t = self.representations("teacher", representation, n, progress)
            s = self.representations(variant, representation, n, progress)
            if progress is not None:
                progress(0.0, "angular similarity of every layer pair")
            result = similarity_matrix(t, s, self.student(variant)[1])
            result["layer_map"] = self.layer_map
            result["mapped"] = mapped_cosines(result, self.layer_map)
            result["variant"] = variant
            return result

        return self._cached(key, compute)

    def cka(self, variant: str = "trained", representation: str = "cls", n: int = 256,
            batch_size: int = 256, progress: Progress | None = None) -> dict[str, Any]:
        key = ("cka", variant, representation, int(n), int(batch_size), self.fingerprint())

        def compute():
            t = self.representations("teacher", representation, n, progress)
            s = self.representations(variant, representation, n, progress)
            if progress is not None:
                progress(0.0, "linear CKA of every layer pair")
            result = cka_matrix(t, s, batch_size, seed=self.seed)
            result["layer_map"] = self.layer_map
            result["variant"] = variant
            return result

        return self._cached(key, compute)

    def _map(self, teacher_layer: int, representation: str, n: int, method: str, seed: int,
             progress: Progress | None = None):
        key = ("map", teacher_layer, representation, int(n), method, int(seed))
        if key not in self._cache:
            t = self.representations("teacher", representation, n, progress)
            if progress is not None:
                progress(0.0, f"fitting the {method.upper()} map on {t.num_examples} teacher points")
            mapper = Map2D(method, seed)
            xy = mapper.fit(t.example_vectors(teacher_layer))
            self._cache[key] = (mapper, xy)
        return self._cache[key]

    def scatter(self, teacher_layer: int, student_layer: int, variant: str = "trained", representation: str = "cls",
                n: int = 256, method: str = "umap", seed: int = 0, progress: Progress | None = None) -> dict[str, Any]:
        """Teacher points of one layer (the fitted map) and the student's projected points placed into it."""
        key = ("scatter", teacher_layer, student_layer, variant, representation, int(n), method, int(seed),
               self.fingerprint())

        def compute():
            t = self.representations("teacher", representation, n, progress)
            s = self.representations(variant, representation, n, progress)
            if not 0 <= teacher_layer < len(t.layers):
                raise LRCError(f"teacher layer {teacher_layer} does not exist (0..{len(t.layers) - 1})")
            if not 0 <= student_layer < len(s.layers):
                raise LRCError(f"student layer {student_layer} does not exist (0..{len(s.layers) - 1})")
            map_start = time.perf_counter()
            mapper, t_xy = self._map(teacher_layer, representation, n, method, seed, progress)
            projector = self.student(variant)[1]
            if progress is not None:
                progress(0.0, f"placing the student's points in the {mapper.method.upper()} map")
            projected = projector.apply(student_layer, s.example_vectors(student_layer))
            s_xy = mapper.transform(projected) if projected is not None else None
            ex = self.examples(n)
            task = self.models.task
            return {
                "teacher_layer": teacher_layer, "student_layer": student_layer, "variant": variant,
                "method": mapper.method, "requested_method": method, "seed": seed,
                "teacher_xy": t_xy.tolist(), "student_xy": s_xy.tolist() if s_xy is not None else None,
                "labels": [float(x) if task.is_regression else int(x) for x in ex["labels"]],
                "label_names": list(task.label_names), "texts": ex["texts"],
                "teacher_pred": _predictions(t.logits, task), "student_pred": _predictions(s.logits, task),
                "projection_source": projector.source(student_layer), "representation": representation,
                "num_examples": t.num_examples, "map_seconds": time.perf_counter() - map_start,
                "fit_seconds": mapper.fit_seconds,
            }

        return self._cached(key, compute)

    def snapshots(self) -> list[dict[str, Any]]:
        from .runs import Run

        return read_snapshots(Run(self.path).iter_events())

    def stage2_step(self) -> int | None:
        """The step stage 2 began at (from the run's `stage` event), None for a one-stage run."""
        from .runs import Run

        steps = [int(e.get("step", 0)) for e in Run(self.path).iter_events()
                 if e.get("type") == "stage" and "phase" not in e]
        return steps[-1] if steps else None

    def accuracy(self, variant: str, representation: str, n: int) -> dict[str, float | None]:
        """Agreement of the sample's predictions with the gold labels (classification only)."""
        task = self.models.task
        if task.is_regression:
            return {}
        gold = np.asarray(self.examples(n)["labels"])
        out = {}
        for model in ("teacher", variant):
            logits = self.representations(model, representation, n).logits
            out[model] = float((logits.argmax(-1) == gold).mean())
        return out


def _predictions(logits: np.ndarray, task) -> list:
    if task.is_regression or logits.shape[-1] == 1:
        return [round(float(x), 3) for x in logits.reshape(-1)]
    names = list(task.label_names)
    return [names[i] if i < len(names) else str(i) for i in logits.argmax(-1).tolist()]


_ANALYSES: "OrderedDict[tuple, RunAnalysis]" = OrderedDict()
_ANALYSES_LOCK = threading.Lock()


_ANALYSES_BUDGET: int | None = None  # bytes of layer vectors each registered analysis keeps; None: the default


def set_cache_budget(max_bytes: int | None) -> None:
    """The cache budget of every RunAnalysis that get_run_analysis hands out, those already made included.

    An app sets it once from its operator's setting; None restores DEFAULT_CACHE_MB."""
    global _ANALYSES_BUDGET
    if max_bytes is not None and int(max_bytes) < 0:
        raise LRCError(f"the layer cache budget must be >= 0 bytes; got {max_bytes}")
    with _ANALYSES_LOCK:
        _ANALYSES_BUDGET = None if max_bytes is None else int(max_bytes)
        for analysis in _ANALYSES.values():
            with analysis._lock:
                analysis.max_cache_bytes = _budget_bytes()


def _budget_bytes() -> int:
    return DEFAULT_CACHE_MB * 2**20 if _ANALYSES_BUDGET is None else _ANALYSES_BUDGET


def get_run_analysis(run_path: str | os.PathLike, data_dir: str | None = None, max_runs: int = 3) -> RunAnalysis:
    """A process-wide RunAnalysis per run folder (the last `max_runs` kept, so models do not pile up), each
    keeping at most set_cache_budget's budget of layer vectors."""
    path = Path(run_path).resolve()
    config = path / "config.json"
    # a run folder deleted and made again under the same id is another run: its config.json is newer
    key = (str(path), config.stat().st_mtime_ns if config.exists() else 0, data_dir)
    with _ANALYSES_LOCK:
        if key in _ANALYSES:
            _ANALYSES.move_to_end(key)
            return _ANALYSES[key]
        analysis = RunAnalysis(run_path, data_dir=data_dir, max_cache_bytes=_budget_bytes())
        _ANALYSES[key] = analysis
        while len(_ANALYSES) > max_runs:
            _ANALYSES.popitem(last=False)
        return analysis


def clear_run_analyses() -> None:
    with _ANALYSES_LOCK:
        _ANALYSES.clear()


__all__ = [
    "REPRESENTATIONS", "METHODS", "Representations", "collect_representations", "Projector", "similarity_matrix",
    "mapped_cosines", "cka_matrix", "hsic_unbiased", "Map2D", "probe_alignment", "read_snapshots", "RunAnalysis",
    "get_run_analysis", "clear_run_analyses", "set_cache_budget", "DEFAULT_CACHE_MB", "STUDENT_VARIANTS", "Progress",
    "warm_up_umap", "collect_all",
]
