"""The Predict tab's plumbing: which teacher and student a run pairs, side-by-side predictions, disagreements.

Every number comes from lrc (`lrc.predict.predict`, `lrc.evaluation.predict_dataset`); this module only picks the
models, lines the two answers up and formats them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrc.errors import LRCError
from lrc.runs import Run, RunStore
from lrc.tasks import TaskSpec, get_task

from .guard import open_run

EXAMPLES_DIR = Path(__file__).resolve().parent.parent / "assets" / "examples"


@dataclass
class Pair:
    """A distillation run's student and the teacher it learned from."""

    run_id: str
    task: str
    student: str  # model folder
    teacher: str | None  # model folder or hub id
    max_length: int
    data_dir: str | None
    is_pair: bool
    labels: tuple[str, ...]


def task_spec(name: str | None) -> TaskSpec | None:
    try:
        return get_task(name or "")
    except LRCError:
        return None


def teacher_of(run: Run) -> str | None:
    """The teacher a run used: the summary's, else the default teacher the events name, else the config's."""
    teacher = run.summary.get("teacher")
    if teacher:
        return str(teacher)
    for event in run.iter_events():
        if event.get("type") == "teacher_ready":
            teacher = event.get("path")
    return teacher or run.config.get("teacher")


def has_model(run: Run) -> bool:
    return (run.model_dir / "config.json").exists()


def pair_for(store: RunStore, run_id: str) -> Pair:
    if not isinstance(run_id, str) or not run_id.strip():
        raise LRCError("pick a run with a trained student first (distil one in the Distill tab)")
    run = open_run(store, run_id)
    if not has_model(run):
        raise LRCError(f"run {run_id} has no saved model yet (status: {run.status})")
    cfg = run.config
    kind = run.kind
    spec = task_spec(cfg.get("task"))
    if kind == "teacher":  # a teacher run on its own: compare it with nothing but itself
        teacher = str(run.model_dir)
    else:
        teacher = teacher_of(run)
    meta_path = run.model_dir / "lrc_model.json"
    labels: tuple[str, ...] = tuple(spec.label_names) if spec else ()
    if meta_path.exists():
        try:
            labels = tuple(json.loads(meta_path.read_text()).get("labels") or labels)
        except (OSError, json.JSONDecodeError):
            pass
    is_pair = bool(spec.is_pair) if spec else bool(cfg.get("text_pair_column"))
    return Pair(run_id, cfg.get("task", "custom"), str(run.model_dir), teacher,
                int(cfg.get("max_seq_length") or 128), cfg.get("data_dir"), is_pair, labels)


def load_examples(task: str | None) -> list[dict[str, Any]]:
    """Example inputs for a task from assets/examples/<task>.json (a list of {text_a, text_b?, note?})."""
    if not task:
        return []
    path = EXAMPLES_DIR / f"{task}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    return [e for e in data if isinstance(e, dict) and e.get("text_a")]


def example_label(example: dict[str, Any]) -> str:
    text = example["text_a"] if not example.get("text_b") else f"{example['text_a']}  ||  {example['text_b']}"
    return text if len(text) <= 110 else text[:107] + "..."


def _side(prediction) -> dict[str, Any]:
    return {
        "label": prediction.label, "probabilities": prediction.probabilities, "score": prediction.score,
        "latency_ms": prediction.latency_ms, "params": prediction.params, "truncated": prediction.truncated,
        "num_tokens": prediction.num_tokens, "notes": list(prediction.notes),
    }


def side_by_side(pair: Pair, text_a: str, text_b: str | None, cache) -> dict[str, Any]:
    """Teacher and student on one input: labels, probabilities, agreement, latency and parameter count."""
    from lrc.predict import predict

    b = text_b if pair.is_pair else None
    if pair.is_pair and b is None:
        b = ""
    out: dict[str, Any] = {"run": pair.run_id, "task": pair.task}
    student = predict(pair.student, text_a, b, max_length=pair.max_length, cache=cache)
    out["student"] = _side(student)
    if pair.teacher:
        teacher = predict(pair.teacher, text_a, b, max_length=pair.max_length, cache=cache)
        out["teacher"] = _side(teacher)
        if student.score is not None and teacher.score is not None:
            out["agree"] = abs(student.score - teacher.score) <= 0.5
        else:
            out["agree"] = student.label == teacher.label
    else:
        out["teacher"] = None
        out["agree"] = None
    return out


def label_value(side: dict[str, Any] | None) -> dict[str, float] | str | None:
    """What gr.Label shows: the probabilities, or the score for a regression task."""
    if not side:
        return None
    if side["probabilities"]:
        return side["probabilities"]
    return side["label"]


def _fmt_params(n: int | None) -> str:
    return f"{n / 1e6:.1f} M" if n else "-"


def comparison_markdown(result: dict[str, Any]) -> str:
    s, t = result["student"], result.get("teacher")
    if t is None:
        line = f"**student** says **{s['label']}** in {s['latency_ms']:.1f} ms ({_fmt_params(s['params'])} parameters)."
        return line + ("\n\n_" + "; ".join(s["notes"]) + "_" if s["notes"] else "")
    verdict = "**Teacher and student agree.**" if result["agree"] else "**Teacher and student disagree.**"
    speed = t["latency_ms"] / s["latency_ms"] if s["latency_ms"] > 0 else None
    shrink = t["params"] / s["params"] if s["params"] else None
    lines = [
        verdict, "",
        "| | teacher | student |", "|---|---|---|",
        f"| label | {t['label']} | {s['label']} |",
        f"| latency | {t['latency_ms']:.1f} ms | {s['latency_ms']:.1f} ms |",
        f"| parameters | {_fmt_params(t['params'])} | {_fmt_params(s['params'])} |",
    ]
    extras = []
    if speed:
        extras.append(f"student {1 / speed:.1f}× slower" if speed < 1 else f"student {speed:.1f}× faster")
    if shrink and shrink > 1.05:
        extras.append(f"{shrink:.1f}× fewer parameters")
    if extras:
        lines += ["", " · ".join(extras) + " (latency of one input on this machine, first call includes warm-up)"]
    notes = sorted(set(s["notes"] + t["notes"]))
    if notes:
        lines += ["", "_" + "; ".join(notes) + "_"]
    return "\n".join(lines)


def find_disagreements(pair: Pair, cache, limit: int = 200, data_dir: str | None = None,
                       seed: int = 42) -> dict[str, Any]:
    """Score up to `limit` dev examples with both models; list those where their answers differ.

    Classification: the argmax labels differ. Regression (STS-B): the scores differ by more than 0.5.
    """
    import numpy as np

    from lrc.data import load_task_data, tokenize
    from lrc.evaluation import predict_dataset

    if not pair.teacher:
        raise LRCError(f"run {pair.run_id} names no teacher to compare with")
    if pair.task == "custom":
        raise LRCError("the disagreements view needs a GLUE task (custom-file runs: use `lrc eval`)")
    data = load_task_data(pair.task, data_dir or pair.data_dir, 0, int(limit), seed, splits=("dev",))
    split, ds = next(iter(data.dev.items()))
    outputs = {}
    for who, spec in (("teacher", pair.teacher), ("student", pair.student)):
        loaded = cache.get(spec)
        tok = tokenize(ds, loaded.tokenizer, pair.max_length)
        out = predict_dataset(loaded.model, tok, loaded.tokenizer, 64)
        outputs[who] = out[0]
    t_logits, s_logits = outputs["teacher"], outputs["student"]
    task = data.task
    rows = []
    if task.is_regression:
        t_pred, s_pred = t_logits[:, 0], s_logits[:, 0]
        differ = np.abs(t_pred - s_pred) > 0.5
        for i in np.flatnonzero(differ):
            ex = ds[int(i)]
            rows.append({"text_a": ex["text_a"], "text_b": ex["text_b"], "gold": float(ex["label"]),
                         "teacher": round(float(t_pred[i]), 3), "student": round(float(s_pred[i]), 3)})
    else:
        def softmax(x):
            e = np.exp(x - x.max(-1, keepdims=True))
            return e / e.sum(-1, keepdims=True)

        names = pair.labels or task.label_names
        t_prob, s_prob = softmax(t_logits), softmax(s_logits)
        t_pred, s_pred = t_prob.argmax(-1), s_prob.argmax(-1)
        differ = t_pred != s_pred
        for i in np.flatnonzero(differ):
            ex = ds[int(i)]
            rows.append({
                "text_a": ex["text_a"], "text_b": ex["text_b"], "gold": names[int(ex["label"])],
                "teacher": f"{names[int(t_pred[i])]} ({t_prob[i, t_pred[i]]:.2f})",
                "student": f"{names[int(s_pred[i])]} ({s_prob[i, s_pred[i]]:.2f})",
            })
    n = len(ds)
    return {"split": split, "examples": n, "disagreements": len(rows),
            "agreement": (1 - len(rows) / n) if n else None, "rows": rows, "is_pair": task.is_pair}
