"""Per-layer representations of a model on a sample ([CLS], masked mean, or every real token), and the
projection of a student's vectors into the teacher's width (lrc.analysis explains the choices)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

from ..errors import LRCError
from ..losses import represent
from .common import _MODEL_INPUTS, REPRESENTATIONS, Progress, _check_representation


def _rows(hidden: torch.Tensor, mask: torch.Tensor, representation: str):
    """[B, L, D] hidden states -> (rows [R, D], example [R], position [R]) for one representation."""
    b = hidden.shape[0]
    if representation == "tokens":
        where = mask.bool().nonzero(as_tuple=False)  # [R, 2]: example, position (row-major, so grouped)
        return hidden[where[:, 0], where[:, 1]], where[:, 0], where[:, 1]
    ex = torch.arange(b, device=hidden.device)
    pos = torch.zeros(b, dtype=torch.long, device=hidden.device)
    return represent(hidden, mask, representation), ex, pos


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
