"""Default teachers: fine-tune a backbone (the bundled MiniLM unless told otherwise) on a task, once, and cache it.

The teacher for a distillation is made from the *task's* recipe (lrc.recipes) on *all* of the task's rows,
whatever the student's own settings are: a student capped at 2,000 rows still learns from a teacher that saw
every row. The teacher run is an ordinary run folder in the store, named by a hash of everything that shapes
it, so the next distillation of the task finds it; a stopped or interrupted one is resumed, not restarted.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Callable, Iterator

from .config import DistillConfig
from .errors import LRCError
from .execute import execute, load_data
from .models import BUNDLED_TEACHER
from .recipes import TEACHER_SEED, pooling_for, recipe_for
from .runs import Run, RunStore
from .tasks import TaskSpec

StopCheck = Callable[[], bool]
TEACHER_SAVE_EVERY = 200  # a teacher takes minutes to hours on a CPU: checkpoint it so a stop or crash resumes
# the settings that shape a default teacher; anything else (logging, device) does not change which teacher it is
_IDENTITY = ("task", "teacher", "data_dir", "train_file", "dev_file", "text_column", "text_pair_column",
             "label_column", "max_train_examples", "max_seq_length", "epochs", "lr", "batch_size", "warmup_ratio",
             "weight_decay", "max_grad_norm", "seed", "pooling", "mixed_precision", "length_grouping")


def labels_only(cfg: DistillConfig, **changes: Any) -> DistillConfig:
    """The same settings with every distillation component off: plain fine-tuning on the gold labels."""
    return cfg.override(use_cos_nce=False, perturb=False, two_stage=False, alpha=0.0, beta=0.0, gamma=1.0,
                        snapshot_every=0, teacher_cache=False, **changes)


def teacher_config(cfg: DistillConfig, task: TaskSpec) -> DistillConfig:
    """How the default teacher of a distillation is trained: the task's recipe, each value replaced by its
    `teacher_*` knob when one is set, on `teacher_max_train_examples` rows (0: all), with the teacher's seed."""
    recipe = recipe_for(task)
    backbone = cfg.teacher or BUNDLED_TEACHER
    pooling = cfg.pooling if cfg.pooling != "auto" else pooling_for(backbone)

    def pick(value: Any, default: Any) -> Any:
        return default if value is None else value

    return labels_only(
        cfg, teacher=backbone, pooling=pooling, max_steps=0, eval_every=0, save_every=TEACHER_SAVE_EVERY,
        epochs=pick(cfg.teacher_epochs, recipe.epochs), lr=pick(cfg.teacher_lr, recipe.lr),
        batch_size=pick(cfg.teacher_batch_size, recipe.batch_size),
        warmup_ratio=pick(cfg.teacher_warmup_ratio, recipe.warmup_ratio),
        max_train_examples=cfg.teacher_max_train_examples, seed=TEACHER_SEED,
    )


def teacher_cache_id(tcfg: DistillConfig) -> str:
    """The folder a default teacher is cached in: one per task, backbone, data and recipe."""
    flat = tcfg.flat()
    key = json.dumps({name: flat[name] for name in _IDENTITY}, sort_keys=True, default=str)
    return f"teacher-{tcfg.task}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def run_teacher(cfg: DistillConfig, run: Run, should_stop: StopCheck | None = None,
                data=None) -> Iterator[dict[str, Any]]:
    """Fine-tune `cfg.teacher` (default: the bundled MiniLM) on the labels into `run/model/`, with `cfg` as given
    apart from the distillation losses being off (see `teacher_config` for the default teacher's settings)."""
    tcfg = labels_only(cfg)
    return execute(run, tcfg, should_stop, kind="teacher", data=data, backbone=tcfg.teacher or BUNDLED_TEACHER)


def ensure_teacher(cfg: DistillConfig, store: RunStore, should_stop: StopCheck | None = None
                   ) -> Iterator[dict[str, Any]]:
    """Yield the default teacher's training events (phase "teacher") unless it is cached already; the last event
    (`teacher_ready`) names its folder. A teacher run that was stopped or interrupted continues from its
    checkpoint; one that cannot continue starts again in a clean folder."""
    from .pipeline import resumable, resume_run

    data = load_data(cfg, max_train_examples=cfg.teacher_max_train_examples)
    tcfg = teacher_config(cfg, data.task)
    run_id = teacher_cache_id(tcfg)
    existing = _existing(store, run_id)
    if existing is not None and existing.status == "completed" and (existing.path / "model" / "config.json").exists():
        yield _ready(existing, cached=True)
        return
    if existing is not None and resumable(existing):
        events = resume_run(existing, should_stop)
        run = existing
    else:
        run = store.create(tcfg, run_id=run_id, kind="teacher", replace=True)
        events = execute(run, tcfg, should_stop, kind="teacher", data=data, backbone=tcfg.teacher)
    for event in events:
        yield {**event, "phase": "teacher"}
    if run.status == "stopped" and should_stop is not None and should_stop():
        return  # a stop request, not a failure: the caller ends its own run as stopped
    if run.status != "completed":
        raise LRCError(f"fine-tuning the default teacher ended as {run.status}; see {run.events_path}")
    yield _ready(run, cached=False)


def _existing(store: RunStore, run_id: str) -> Run | None:
    try:
        return store.get(run_id)
    except LRCError:
        return None


def _ready(run: Run, cached: bool) -> dict[str, Any]:
    summary = run.summary
    return {"type": "teacher_ready", "path": str(run.path), "cached": cached, "score": summary.get("score"),
            "metric": summary.get("main_metric"), "seconds": summary.get("seconds")}


