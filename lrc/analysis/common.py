"""What every analysis module shares: the representation names, the progress callback's type, one-thread
sections for small tensor work."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from ..errors import LRCError

if TYPE_CHECKING:
    from .representations import Representations

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

def _check_representation(representation: str) -> str:
    if representation not in REPRESENTATIONS:
        raise LRCError(f"representation must be one of {', '.join(REPRESENTATIONS)}; got {representation!r}")
    return representation


def _nanmean(x: torch.Tensor) -> float:
    x = x[~torch.isnan(x)]
    return float(x.mean()) if x.numel() else float("nan")
