"""Snapshots during training: matched-layer alignment on a fixed probe batch, written as events."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from .common import _MODEL_INPUTS, _check_representation, _nanmean
from .cosines import _TeacherSide, _example_cosines
from .representations import _rows


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
