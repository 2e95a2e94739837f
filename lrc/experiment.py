"""Experiments: the paper's claims checked on our own runs (baselines, LRC, ablations, seeds, robustness).

One teacher, one student shape, the same data, steps and seeds for every variant; each variant-seed is an ordinary
run in the run store (so the app can overlay them), and the experiment's table is `<store>/<name>/experiment.json`.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .config import DistillConfig
from .errors import ConfigError, LRCError
from .runs import RunStore, atomic_write_json, read_json

# name -> (description, config changes, pipeline kind)
VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "finetune": ("student trained on the labels alone (no teacher signal)",
                 dict(use_cos_nce=False, perturb=False, two_stage=False, alpha=0.0, beta=0.0, gamma=1.0), "finetune"),
    "kd": ("plain KD: soft + hard labels", dict(use_cos_nce=False, perturb=False, two_stage=False, alpha=0.0),
           "distill"),
    "lrc": ("the full method", {}, "distill"),
    "lrc-no-cosnce": ("LRC without COS-NCE", dict(use_cos_nce=False, two_stage=False, alpha=0.0), "distill"),
    "lrc-no-perturb": ("LRC without gradient perturbation", dict(perturb=False), "distill"),
    "lrc-one-stage": ("LRC without the two-stage schedule", dict(two_stage=False), "distill"),
    "lrc-mse": ("LRC with MSE in place of angular distance", dict(distance="mse"), "distill"),
}


@dataclass
class ExperimentSpec:
    name: str
    base: DistillConfig
    variants: list[str]
    seeds: list[int]
    robustness_rates: tuple[float, ...] = (0.1, 0.2)

    def validate(self) -> None:
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ConfigError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
        if not self.seeds:
            raise ConfigError("an experiment needs at least one seed")
        self.base.validate()


def run_experiment(spec: ExperimentSpec, store: RunStore, should_stop: Callable[[], bool] | None = None
                   ) -> Iterator[dict[str, Any]]:
    """Run every variant x seed (skipping runs already completed, so an interrupted experiment resumes)."""
    from .pipeline import ensure_teacher, resumable, resume_run, run_distill

    spec.validate()
    should_stop = should_stop or (lambda: False)
    folder = store.root / spec.name
    folder.mkdir(parents=True, exist_ok=True)
    base = spec.base
    teacher = base.teacher
    if teacher is None:
        for event in ensure_teacher(base, store, should_stop):
            if event["type"] == "teacher_ready":
                teacher = event["path"]
            yield {**event, "phase": "teacher"}
    base = base.override(teacher=teacher)
    earlier = read_json(folder / "experiment.json", {}) or {}
    record: dict[str, Any] = {"name": spec.name, "task": base.task, "teacher": teacher, "seeds": spec.seeds,
                              "variants": spec.variants, "base": base.to_dict(), "runs": {},
                              "started": earlier.get("started") or time.time()}
    for seed in spec.seeds:
        for variant in spec.variants:
            if should_stop():
                record["stopped"] = True
                atomic_write_json(folder / "experiment.json", summarise(record, store))
                return
            _desc, changes, kind = VARIANTS[variant]
            run_id = f"{spec.name}-{variant}-s{seed}"
            cfg = base.override(seed=seed, **changes)
            existing = _existing_run(store, run_id)
            if existing is not None and existing.status == "completed" and existing.summary.get("score") is not None:
                record["runs"].setdefault(variant, []).append(run_id)  # finished before: kept as it is
                continue
            resuming = existing is not None and resumable(existing)
            if resuming:  # stopped or interrupted: continue where it stopped
                events = resume_run(existing, should_stop)
            else:  # never started, or ended without a checkpoint: start again in a clean folder
                run = store.create(cfg, run_id=run_id, kind=kind, replace=True, experiment=spec.name,
                                   variant=variant)
                events = run_distill(cfg, run, should_stop, store=store, kind=kind)
            yield {"type": "variant", "variant": variant, "seed": seed, "run": run_id, "resumed": resuming}
            for event in events:
                yield {**event, "phase": f"{variant}/s{seed}"}
            record["runs"].setdefault(variant, []).append(run_id)
            atomic_write_json(folder / "experiment.json", summarise(record, store))
    if spec.robustness_rates:
        yield {"type": "status", "message": "robustness evaluation"}
        record["robustness"] = robustness_table(record, store, base, spec.robustness_rates)
    record["finished"] = time.time()
    atomic_write_json(folder / "experiment.json", summarise(record, store))
    yield {"type": "experiment_done", "path": str(folder / "experiment.json")}


def _existing_run(store: RunStore, run_id: str):
    try:
        return store.get(run_id)
    except LRCError:
        return None


def summarise(record: dict[str, Any], store: RunStore) -> dict[str, Any]:
    """Mean and standard deviation of each variant's dev score over seeds, and its share of the teacher's."""
    table = {}
    teacher_score = None
    for variant, run_ids in record["runs"].items():
        scores, seconds = [], []
        for run_id in run_ids:
            summary = read_json(store.root / run_id / "summary.json", {}) or {}
            if summary.get("score") is not None:
                scores.append(summary["score"])
                seconds.append(summary.get("seconds", 0.0))
            teacher_score = summary.get("teacher_score", teacher_score)
        if scores:
            mean = statistics.fmean(scores)
            table[variant] = {
                "mean": mean, "std": statistics.stdev(scores) if len(scores) > 1 else 0.0, "n": len(scores),
                "scores": scores, "seconds_mean": statistics.fmean(seconds),
                "share_of_teacher": mean / teacher_score if teacher_score else None,
            }
    return {**record, "table": table, "teacher_score": teacher_score}


def robustness_table(record: dict[str, Any], store: RunStore, base: DistillConfig,
                     rates: tuple[float, ...]) -> dict[str, Any]:
    """Dev accuracy under typos / word drops / word swaps for kd, lrc and lrc-no-perturb (mean over seeds)."""
    from .data import tokenize
    from .metrics import compute_metrics, main_score
    from .models import load_classifier, load_tokenizer
    from .pipeline import load_data
    from .robustness import NOISE_KINDS, corrupt_dataset
    from .devices import make_accelerator
    from .evaluation import predict_dataset

    data = load_data(base)
    dev = data.main_dev
    acc = make_accelerator(base)
    out: dict[str, Any] = {}
    for variant in ("kd", "lrc", "lrc-no-perturb"):
        for run_id in record["runs"].get(variant, []):
            model_dir = store.root / run_id / "student"
            if not (model_dir / "config.json").exists():
                continue
            model = load_classifier(str(model_dir), data.task).to(acc.device)
            tok = load_tokenizer(str(model_dir))
            for kind in ("clean",) + NOISE_KINDS:
                for rate in ((0.0,) if kind == "clean" else rates):
                    noisy = dev if kind == "clean" else corrupt_dataset(dev, kind, rate, seed=0)
                    logits, labels = predict_dataset(model, tokenize(noisy, tok, base.max_seq_length), tok,
                                                     base.batch_size * 2, acc)
                    score = main_score(data.task, compute_metrics(data.task, logits, labels))
                    out.setdefault(variant, {}).setdefault(f"{kind}@{rate:g}", []).append(score)
    return {v: {k: statistics.fmean(s) for k, s in cols.items()} for v, cols in out.items()}


def list_experiments(store: RunStore) -> list[str]:
    """Names of the experiments in a run store (folders holding an experiment.json), newest first."""
    found = [p for p in store.root.iterdir() if p.is_dir() and not p.is_symlink() and (p / "experiment.json").is_file()]
    found.sort(key=lambda p: (p / "experiment.json").stat().st_mtime, reverse=True)
    return [p.name for p in found]


def load_experiment(store: RunStore, name: str) -> dict[str, Any]:
    """An experiment's table, re-summarised from its runs (so a still-running experiment shows what is done)."""
    folder = store.path_for(name)  # validates the name: one safe path component inside the store
    record = read_json(folder / "experiment.json", None)
    if not isinstance(record, dict) or "runs" not in record:
        raise ConfigError(f"no experiment {name!r} in {store.root}")
    result = summarise(record, store)
    result["seeds_done"] = {v: len(ids) for v, ids in record["runs"].items()}
    return result


def experiment_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per variant (in the runner's order), then the teacher: what a table or a plot shows."""
    rows = []
    for variant in [v for v in VARIANTS if v in result.get("table", {})]:
        row = result["table"][variant]
        rows.append({"variant": variant, "what": VARIANTS[variant][0], "mean": row["mean"], "std": row["std"],
                     "n": row["n"], "scores": row["scores"], "share_of_teacher": row.get("share_of_teacher"),
                     "seconds_mean": row.get("seconds_mean")})
    return rows


def markdown_table(result: dict[str, Any]) -> str:
    lines = ["| variant | dev score (mean ± sd) | n | share of teacher | mean seconds |", "|---|---|---|---|---|"]
    for variant, row in result.get("table", {}).items():
        share = f"{100 * row['share_of_teacher']:.1f}%" if row.get("share_of_teacher") is not None else "n/a"
        lines.append(f"| {variant} | {row['mean']:.4f} ± {row['std']:.4f} | {row['n']} | {share} | "
                     f"{row['seconds_mean']:.0f} |")
    if result.get("teacher_score") is not None:
        lines.append(f"| teacher | {result['teacher_score']:.4f} | | 100% | |")
    rob = result.get("robustness")
    if rob:
        cols = sorted({c for row in rob.values() for c in row})
        lines += ["", "| variant | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for variant, row in rob.items():
            lines.append(f"| {variant} | " + " | ".join(f"{row.get(c, float('nan')):.4f}" for c in cols) + " |")
    return "\n".join(lines)
