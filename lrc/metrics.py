"""GLUE metrics, computed the way the GLUE leaderboard reports them (scikit-learn and SciPy do the math)."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from .tasks import TaskSpec


def _safe_corr(fn, a: np.ndarray, b: np.ndarray) -> float:
    # a constant prediction makes the correlation undefined; report 0 rather than NaN so curves stay drawable
    if len(a) < 2 or np.std(a) == 0 or np.std(b) == 0:
        return 0.0
    value = float(fn(a, b)[0])
    return 0.0 if math.isnan(value) else value


def compute_metrics(task: TaskSpec, predictions: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Score predictions for a task.

    `predictions` are logits `[N, C]` (or `[N]`/`[N, 1]` scores for regression); `labels` are ids or scores.
    Every value is a fraction/correlation in natural units (accuracy 0.91, not 91).
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    labels = np.asarray(labels)
    out: dict[str, float] = {}
    if task.is_regression:
        scores = predictions.reshape(-1)
        gold = labels.astype(np.float64).reshape(-1)
        for name in task.metrics:
            if name == "pearson":
                out["pearson"] = _safe_corr(pearsonr, scores, gold)
            elif name == "spearman":
                out["spearman"] = _safe_corr(spearmanr, scores, gold)
        out["combined"] = float(np.mean([out[m] for m in task.metrics]))
        return out
    pred = predictions.argmax(-1) if predictions.ndim == 2 else predictions.astype(int)
    gold = labels.astype(int)
    for name in task.metrics:
        if name == "accuracy":
            out["accuracy"] = float(accuracy_score(gold, pred))
        elif name == "f1":
            out["f1"] = float(f1_score(gold, pred, zero_division=0))
        elif name == "macro_f1":
            out["macro_f1"] = float(f1_score(gold, pred, average="macro", zero_division=0))
        elif name == "mcc":
            out["mcc"] = float(matthews_corrcoef(gold, pred)) if len(set(pred.tolist())) > 1 else 0.0
    if len(task.metrics) > 1:
        out["combined"] = float(np.mean([out[m] for m in task.metrics]))
    return out


def main_score(task: TaskSpec, metrics: dict[str, float]) -> float:
    """The single number a task is ranked by (GLUE's headline metric)."""
    return float(metrics.get(task.main_metric, float("nan")))


CONSTANT_MARGIN = 0.01  # a score this far above the best constant answer counts as learning something


def constant_score(task: TaskSpec, labels: np.ndarray) -> float:
    """The main metric of the best constant answer on these labels: the majority class for accuracy, always the
    positive class for F1 (or 0 when that is worse), 0 for Matthews and for correlations (a constant has none).

    A student at or below this learned nothing a one-line rule would not do."""
    labels = np.asarray(labels)
    metric = task.main_metric
    if task.is_regression or metric in ("mcc", "pearson", "spearman"):
        return 0.0
    classes = np.arange(task.num_labels)
    best = 0.0
    for c in classes:
        logits = np.zeros((len(labels), task.num_labels))
        logits[:, c] = 1.0
        best = max(best, main_score(task, compute_metrics(task, logits, labels)))
    return best


def beats_constant(score: float | None, constant: float | None) -> bool | None:
    if score is None or constant is None or math.isnan(score):
        return None
    return bool(score > constant + CONSTANT_MARGIN)
