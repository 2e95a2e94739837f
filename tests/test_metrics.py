"""GLUE metrics per task, checked against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lrc.metrics import compute_metrics, main_score
from lrc.tasks import custom_task, get_task


def logits_for(pred: list[int], classes: int = 2) -> np.ndarray:
    out = np.zeros((len(pred), classes))
    out[np.arange(len(pred)), pred] = 1.0
    return out


def test_cola_mcc_by_hand():
    gold = [1, 1, 0, 0, 1, 0]
    pred = [1, 0, 0, 0, 1, 1]
    tp, tn, fp, fn = 2, 2, 1, 1
    mcc = (tp * tn - fp * fn) / math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    m = compute_metrics(get_task("cola"), logits_for(pred), np.array(gold))
    assert m["mcc"] == pytest.approx(mcc) and m["accuracy"] == pytest.approx(4 / 6)
    assert main_score(get_task("cola"), m) == pytest.approx(mcc)


def test_cola_constant_prediction_has_mcc_zero():
    m = compute_metrics(get_task("cola"), logits_for([1, 1, 1, 1]), np.array([1, 0, 1, 1]))
    assert m["mcc"] == 0.0 and m["accuracy"] == pytest.approx(0.75)


@pytest.mark.parametrize("task", ["mrpc", "qqp"])
def test_f1_and_accuracy_by_hand(task):
    gold = [1, 1, 1, 0, 0, 0, 0, 1]
    pred = [1, 1, 0, 0, 1, 0, 0, 0]
    tp, fp, fn = 2, 1, 2
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    f1 = 2 * precision * recall / (precision + recall)
    m = compute_metrics(get_task(task), logits_for(pred), np.array(gold))
    assert m["f1"] == pytest.approx(f1) and m["accuracy"] == pytest.approx(5 / 8)
    assert m["combined"] == pytest.approx((f1 + 5 / 8) / 2)
    assert main_score(get_task(task), m) == pytest.approx(f1)


def test_f1_counts_class_one_as_positive():
    # all predictions 0 on gold 0: perfect accuracy but no positives found, so F1 of class 1 is 0
    m = compute_metrics(get_task("mrpc"), logits_for([0, 0, 0]), np.array([0, 0, 1]))
    assert m["f1"] == 0.0 and m["accuracy"] == pytest.approx(2 / 3)


def test_stsb_pearson_and_spearman_by_hand():
    gold = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    scores = np.array([0.5, 0.7, 2.5, 2.4, 4.9, 9.0])
    x, y = scores - scores.mean(), gold - gold.mean()
    pearson = float((x * y).sum() / math.sqrt((x * x).sum() * (y * y).sum()))
    ranks = np.array([1, 2, 4, 3, 5, 6], dtype=float) - 3.5
    gold_ranks = np.arange(1, 7, dtype=float) - 3.5
    spearman = float((ranks * gold_ranks).sum() / math.sqrt((ranks**2).sum() * (gold_ranks**2).sum()))
    task = get_task("stsb")
    for preds in (scores, scores[:, None]):  # [N] and [N, 1]
        m = compute_metrics(task, preds, gold)
        assert m["pearson"] == pytest.approx(pearson) and m["spearman"] == pytest.approx(spearman)
        assert m["combined"] == pytest.approx((pearson + spearman) / 2)
    assert main_score(task, m) == pytest.approx(pearson)


def test_stsb_constant_prediction_is_zero_not_nan():
    m = compute_metrics(get_task("stsb"), np.full((4, 1), 2.0), np.array([0.0, 1.0, 2.0, 3.0]))
    assert m["pearson"] == 0.0 and m["spearman"] == 0.0


def test_accuracy_tasks_use_argmax_of_logits():
    logits = np.array([[0.1, 0.9, 0.0], [2.0, -1.0, 0.5], [0.0, 0.1, 0.3], [0.3, 0.2, 0.1]])
    m = compute_metrics(get_task("mnli"), logits, np.array([1, 0, 2, 2]))
    assert m == {"accuracy": pytest.approx(0.75)}
    for task in ("sst2", "qnli", "rte", "wnli"):
        assert set(compute_metrics(get_task(task), logits_for([0, 1]), np.array([0, 0]))) == {"accuracy"}


def test_values_are_fractions_not_percentages():
    m = compute_metrics(get_task("sst2"), logits_for([1, 1, 0, 0]), np.array([1, 1, 0, 0]))
    assert m["accuracy"] == 1.0


def test_custom_task_metrics():
    binary = custom_task(("neg", "pos"), pair=False)
    m = compute_metrics(binary, logits_for([1, 0, 1]), np.array([1, 0, 0]))
    assert set(m) == {"accuracy", "f1", "combined"} and m["f1"] == pytest.approx(2 / 3)
    three = custom_task(("a", "b", "c"), pair=True)
    m = compute_metrics(three, logits_for([0, 1, 2, 2], 3), np.array([0, 1, 2, 1]))
    assert m["macro_f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_main_score_missing_metric_is_nan():
    assert math.isnan(main_score(get_task("cola"), {"accuracy": 0.5}))
