"""Angular similarity between every teacher layer and every student layer: cosine to the example's own teacher
vector, to the other examples' (the negatives), and the margin between them."""

from __future__ import annotations

import time
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .common import _EPS, _jsonable, _nanmean, _one_thread, _same_rows
from .representations import Projector, Representations


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

