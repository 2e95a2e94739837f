"""The Runs tab's tables: one row per run of the store, and a side-by-side of the runs picked for comparison."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from lrc.runs import Run, RunStore

from .predicting import task_spec

# config fields a comparison table may show when they differ between the picked runs
COMPARE_FIELDS = (
    "task", "teacher", "use_cos_nce", "perturb", "epsilon", "two_stage", "stage1_fraction", "negatives",
    "num_negatives", "representation", "distance", "temperature", "alpha", "beta", "gamma", "lr", "batch_size",
    "epochs", "max_steps", "max_train_examples", "max_seq_length", "seed", "student.layers", "student.hidden",
    "student.heads", "student.ffn", "student.init",
)


def _flat(cfg: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in cfg.items() if k != "student"}
    for k, v in (cfg.get("student") or {}).items():
        out[f"student.{k}"] = v
    return out


def method_of(cfg: dict[str, Any], kind: str = "distill") -> str:
    """A short name for what a run trained: LRC (+ its switches), KD, or a teacher fine-tune."""
    if kind == "teacher":
        return "teacher fine-tune"
    if kind == "finetune":
        return "fine-tune (labels only)"
    cos = cfg.get("use_cos_nce", True) and cfg.get("alpha", 1.0) > 0
    parts = []
    if cos:
        parts.append("LRC" if cfg.get("distance", "angular") == "angular" else "LRC (MSE)")
        negs = cfg.get("negatives", "batch")
        parts.append(f"bank K={cfg.get('num_negatives')}" if negs == "bank" else "in-batch negs")
        if not cfg.get("two_stage", True):
            parts.append("one stage")
    else:
        parts.append("KD" if cfg.get("beta", 1.0) > 0 else "labels only")
    parts.append(f"perturb ε={cfg.get('epsilon'):g}" if cfg.get("perturb") and cfg.get("epsilon") else "no perturb")
    return " · ".join(parts)


def shape_of(cfg: dict[str, Any], kind: str = "distill") -> str:
    s = cfg.get("student") or {}
    if kind == "teacher":
        return "-"
    if s.get("init") == "checkpoint":
        return f"from {s.get('checkpoint')}"
    return f"{s.get('layers')}L/{s.get('hidden')}H/{s.get('ffn')}F"


def _round(x: Any, n: int = 4) -> Any:
    return round(x, n) if isinstance(x, float) else x


def run_record(run: Run) -> dict[str, Any]:
    """Everything the Runs tab and the `runs` API endpoint say about one run."""
    cfg, summary, meta = run.config, run.summary, run.meta
    kind = meta.get("kind") or "distill"
    spec = task_spec(cfg.get("task"))
    size = run.size_bytes()
    return {
        "run": run.id,
        "kind": kind,
        "task": cfg.get("task"),
        "status": run.status,
        "method": method_of(cfg, kind),
        "student": shape_of(cfg, kind),
        "metric": summary.get("main_metric") or (spec.main_metric if spec else None),
        "score": _round(summary.get("score")),
        "teacher_score": _round(summary.get("teacher_score")),
        "metrics": summary.get("metrics") or {},
        "params": summary.get("student_params"),
        "teacher_params": summary.get("teacher_params"),
        "size_mb": round(size / 1e6, 1) if size else None,
        "samples_per_s": _round(summary.get("samples_per_s"), 1),
        "seconds": _round(summary.get("seconds"), 1),
        "steps": summary.get("steps"),
        "total_steps": summary.get("total_steps"),
        "teacher": summary.get("teacher") or cfg.get("teacher"),
        "created": meta.get("created"),
        "source": meta.get("source", "cli"),
        "message": summary.get("message") or run.status_info.get("message") or "",
        "has_model": (run.model_dir / "config.json").exists(),
        # the owner (a session hash) stays private: whoever knows it could pass as that session and stop the run
        "config": cfg,
        "meta": {k: v for k, v in meta.items() if k != "owner"},
    }


def list_records(store: RunStore) -> list[dict[str, Any]]:
    return [run_record(r) for r in store.list()]


TABLE_COLUMNS = ["run", "task", "status", "method", "student", "score", "teacher", "params (M)", "size (MB)",
                 "samples/s", "time (s)"]
TABLE_WIDTHS = ["17%", "5%", "8%", "18%", "10%", "10%", "7%", "6%", "6%", "7%", "6%"]


def table_rows(records: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for r in records:
        score = f"{r['score']:.4f} {r['metric']}" if isinstance(r["score"], float) else ""
        rows.append([
            r["run"], r["task"], r["status"], r["method"], r["student"], score,
            r["teacher_score"] if r["teacher_score"] is not None else "",
            round(r["params"] / 1e6, 2) if r["params"] else "",
            r["size_mb"] if r["size_mb"] is not None else "",
            r["samples_per_s"] if r["samples_per_s"] is not None else "",
            r["seconds"] if r["seconds"] is not None else "",
        ])
    return rows


def compare_rows(records: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Metrics side by side, plus every setting that differs between the runs (the reason they differ)."""
    flats = [_flat(r["config"]) for r in records]
    differing = [f for f in COMPARE_FIELDS if len({repr(fl.get(f)) for fl in flats}) > 1]
    headers = ["run", "method", "score", "teacher score", "params (M)", "samples/s", "time (s)"] + differing
    rows = []
    for r, fl in zip(records, flats):
        rows.append([
            r["run"], r["method"],
            f"{r['score']:.4f} {r['metric']}" if isinstance(r["score"], float) else r["status"],
            r["teacher_score"] if r["teacher_score"] is not None else "",
            round(r["params"] / 1e6, 2) if r["params"] else "",
            r["samples_per_s"] if r["samples_per_s"] is not None else "",
            r["seconds"] if r["seconds"] is not None else "",
        ] + [str(fl.get(f)) for f in differing])
    return headers, rows


def zip_model(run: Run) -> str:
    """The run's model folder (student/ or model/) as a zip in a fresh temp folder; returns its path."""
    model = run.model_dir
    if not (model / "config.json").exists():
        from lrc.errors import LRCError

        raise LRCError(f"run {run.id} has no saved model to download (status: {run.status})")
    out_dir = Path(tempfile.mkdtemp(prefix="lrc-download-"))
    base = out_dir / f"{run.id}-{model.name}"
    return shutil.make_archive(str(base), "zip", root_dir=model)


def push_to_hub(run: Run, repo_id: str, token: str, private: bool = True) -> str:
    """Upload the run's model folder (weights, tokenizer, model card) to a hub model repo; returns its URL."""
    from huggingface_hub import HfApi

    from lrc.errors import LRCError

    if not (run.model_dir / "config.json").exists():
        raise LRCError(f"run {run.id} has no saved model to push")
    repo_id = (repo_id or "").strip()
    if not repo_id or repo_id.count("/") != 1:
        raise LRCError("give the hub repository as owner/name, e.g. my-user/lrc-sst2-student")
    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
    api.upload_folder(folder_path=str(run.model_dir), repo_id=repo_id, repo_type="model",
                      commit_message=f"LRC Studio: upload {run.id}")
    return str(url)


# ---- experiments -------------------------------------------------------------------------------------------------

EXPERIMENT_COLUMNS = ["variant", "what it is", "dev score (mean ± sd)", "seeds", "share of teacher", "s / run"]


def experiment_rows(rows: list[dict[str, Any]], teacher_score: float | None) -> list[list[Any]]:
    out = []
    for r in rows:
        share = r.get("share_of_teacher")
        out.append([r["variant"], r.get("what", ""), f"{r['mean']:.4f} ± {r['std']:.4f}", r["n"],
                    f"{100 * share:.1f}%" if isinstance(share, (int, float)) else "n/a",
                    f"{r['seconds_mean']:.0f}" if isinstance(r.get("seconds_mean"), (int, float)) else ""])
    if isinstance(teacher_score, (int, float)):
        out.append(["teacher", "the fine-tuned teacher", f"{teacher_score:.4f}", "", "100%", ""])
    return out


def experiment_note(data: dict[str, Any]) -> str:
    """Robustness (dev score under typos / word drops / swaps) as a small markdown table, and the state."""
    lines = [] if data.get("finished") else ["*Still running or interrupted: the table shows the finished runs.*"]
    rob = data.get("robustness") or {}
    if rob:
        cols = sorted({c for row in rob.values() for c in row})
        lines += ["**Robustness** (dev score on corrupted inputs, mean over seeds)", "",
                  "| variant | " + " | ".join(cols) + " |", "|---|" + "---|" * len(cols)]
        for variant, row in rob.items():
            lines.append(f"| {variant} | " + " | ".join(
                f"{row[c]:.4f}" if isinstance(row.get(c), (int, float)) else "" for c in cols) + " |")
    return "\n".join(lines)
