"""A whole run, from a config to a finished run folder: load data and models, train, save, summarise.

The CLI and the app both call these generators and only display what they yield; every event is also
appended to the run's events.jsonl here, so there is one code path for every front end.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from accelerate.utils import set_seed
from safetensors.torch import save_file

from .config import DistillConfig
from .data import TaskData, load_task_data
from .errors import LRCError
from .metrics import compute_metrics, main_score
from .models import (
    BUNDLED_TEACHER,
    Projections,
    build_student,
    check_layer_map,
    count_parameters,
    is_finetuned_for,
    load_classifier,
    load_tokenizer,
    resolve_model_path,
    uniform_layer_map,
)
from .runs import Run, RunStore, atomic_write_json
from .tasks import TaskSpec
from .train import Distiller, make_accelerator, predict_dataset
from .data import tokenize

StopCheck = Callable[[], bool]


# ---- saving -----------------------------------------------------------------------------------------------------

def model_card(task: TaskSpec, cfg: dict[str, Any], how: str, metrics: dict[str, Any] | None = None) -> str:
    lines = [
        "---", "library_name: transformers", "pipeline_tag: text-classification", "tags: [lrc-bert, distillation]",
        "---", "", f"# {task.name} model made with LRC Studio", "",
        how, "",
        "Load it with `AutoModelForSequenceClassification.from_pretrained(path)`.", "",
        "## Settings", "```json", json.dumps(cfg, indent=2, sort_keys=True, default=str), "```",
    ]
    if metrics:
        lines += ["", "## Dev metrics", "```json", json.dumps(metrics, indent=2, sort_keys=True), "```"]
    return "\n".join(lines) + "\n"


def save_model_atomic(model, tokenizer, target: Path, task: TaskSpec, card: str, extra: dict[str, Any]) -> None:
    """save_pretrained into a temp folder, then swap it in: a crash mid-save leaves the previous model intact."""
    target = Path(target)
    tmp = target.with_name(f".{target.name}.tmp")
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        atomic_write_json(tmp / "lrc_model.json", {"task": task.name, "labels": list(task.label_names), **extra})
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def save_projections(projections: Projections | None, path: Path) -> None:
    if projections is None:
        return
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in projections.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"shared": str(projections.shared)})
    tmp.replace(path)


# ---- teachers ---------------------------------------------------------------------------------------------------

def labels_only(cfg: DistillConfig, **changes) -> DistillConfig:
    """The same settings with every distillation component off: plain fine-tuning on the gold labels."""
    return cfg.override(use_cos_nce=False, perturb=False, two_stage=False, alpha=0.0, beta=0.0, gamma=1.0,
                        snapshot_every=0, **changes)


def teacher_finetune_config(cfg: DistillConfig) -> DistillConfig:
    """How a default teacher is made for a distillation: the same data, caps and length, the teacher_* settings."""
    return labels_only(cfg, epochs=cfg.teacher_epochs, max_steps=0, lr=cfg.teacher_lr, eval_every=0, save_every=0,
                       teacher=cfg.teacher or BUNDLED_TEACHER)


def teacher_cache_id(cfg: DistillConfig) -> str:
    """The folder a default teacher is cached in: one per task, backbone, data and fine-tuning settings."""
    key = json.dumps({
        "task": cfg.task, "backbone": cfg.teacher or BUNDLED_TEACHER, "data_dir": str(cfg.data_dir),
        "train_file": cfg.train_file, "max_train": cfg.max_train_examples, "len": cfg.max_seq_length,
        "epochs": float(cfg.teacher_epochs), "lr": float(cfg.teacher_lr), "seed": cfg.seed, "data_seed": 0,
    }, sort_keys=True)
    return f"teacher-{cfg.task}-{hashlib.sha1(key.encode()).hexdigest()[:8]}"


def run_teacher(cfg: DistillConfig, run: Run, should_stop: StopCheck | None = None,
                data: TaskData | None = None) -> Iterator[dict[str, Any]]:
    """Fine-tune `cfg.teacher` (default: the bundled MiniLM) on the labels into `run/model/`.

    `cfg` is used as given apart from switching the distillation losses off; see `teacher_finetune_config`.
    """
    tcfg = labels_only(cfg)
    return _execute(run, tcfg, should_stop, kind="teacher", data=data, backbone=tcfg.teacher or BUNDLED_TEACHER)


def ensure_teacher(cfg: DistillConfig, store: RunStore, data: TaskData, should_stop: StopCheck | None = None
                   ) -> Iterator[dict[str, Any]]:
    """Yield teacher-training events if the default teacher is not cached yet; the last event names its path."""
    run_id = teacher_cache_id(cfg)
    try:
        run = store.get(run_id)
        if run.status == "completed" and (run.path / "model" / "config.json").exists():
            yield {"type": "teacher_ready", "path": str(run.path), "cached": True}
            return
    except LRCError:
        pass
    run = store.create(teacher_finetune_config(cfg).to_dict(), run_id=run_id, kind="teacher", exist_ok=True)
    for event in run_teacher(teacher_finetune_config(cfg), run, should_stop, data=data):
        yield {**event, "phase": "teacher"}
    if run.status == "stopped" and should_stop is not None and should_stop():
        return  # a stop request, not a failure: the caller ends its own run as stopped
    if run.status != "completed":
        raise LRCError(f"fine-tuning the default teacher ended as {run.status}; see {run.events_path}")
    yield {"type": "teacher_ready", "path": str(run.path), "cached": False}


# ---- distillation -----------------------------------------------------------------------------------------------

def load_data(cfg: DistillConfig) -> TaskData:
    return load_task_data(
        cfg.task, cfg.data_dir, cfg.max_train_examples, cfg.max_eval_examples, cfg.seed,
        train_file=cfg.train_file, dev_file=cfg.dev_file, text_column=cfg.text_column,
        text_pair_column=cfg.text_pair_column, label_column=cfg.label_column,
    )


def run_distill(cfg: DistillConfig, run: Run, should_stop: StopCheck | None = None,
                store: RunStore | None = None, kind: str = "distill") -> Iterator[dict[str, Any]]:
    """Distil a student into `run/student/`, fine-tuning (and caching) the default teacher first when needed.

    kind "finetune" trains the same student on the labels alone (the teacher only initialises it).
    """
    cfg.validate()
    try:  # a run that fails before training starts must not stay "queued" forever
        data = load_data(cfg)
        teacher_spec = cfg.teacher
        if teacher_spec is None or not is_finetuned_for(teacher_spec, data.task):
            store = store or RunStore(run.path.parent)
            for event in ensure_teacher(cfg, store, data, should_stop):
                if event["type"] == "teacher_ready":
                    teacher_spec = event["path"]
                run.append_event(event)
                yield event
            if should_stop and should_stop():
                run.set_status("stopped")
                end = {"type": "end", "status": "stopped", "step": 0, "message": "stopped while training the teacher"}
                run.append_event(end)
                yield end
                return
    except LRCError as exc:
        _fail(run, str(exc))
        raise
    return (yield from _execute(run, cfg, should_stop, kind=kind, data=data, teacher_spec=teacher_spec))


# ---- resuming ---------------------------------------------------------------------------------------------------

CHECKPOINT = "checkpoint"
_RUN_META = ("kind", "created", "experiment", "variant", "preset", "owner", "resumed")


def resumable(run: Run) -> bool:
    """A run can continue when it has a checkpoint and is not finished or still going."""
    return (run.path / CHECKPOINT / "trainer_state.json").exists() and run.status in ("stopped", "interrupted",
                                                                                       "failed")


def resume_run(run: Run, should_stop: StopCheck | None = None) -> Iterator[dict[str, Any]]:
    """Continue a stopped, interrupted or failed run from its latest checkpoint, in its own folder.

    The settings are the run's own (config.json) so the continuation is the same run; events after the checkpoint
    (written before the crash, now superseded) are dropped from events.jsonl so the curves do not double back.
    """
    state = prepare_resume(run)
    ckpt = run.path / CHECKPOINT
    cfg = DistillConfig.from_dict({k: v for k, v in run.config.items() if k not in _RUN_META})
    run.append_event({"type": "status", "message": f"resuming from the checkpoint at step {state['step']}"})
    return _execute(run, cfg, should_stop, kind=state.get("kind", "distill"), data=None,
                    teacher_spec=state.get("teacher_spec"), backbone=state.get("backbone"), resume_from=ckpt)


def prepare_resume(run: Run) -> dict[str, Any]:
    """Check that a run can continue and cut its events back to its checkpoint; returns the checkpoint's state.

    Idempotent, so a queue (the app) can call it when a resume is asked for and again when it starts.
    """
    from .train import read_trainer_state

    status = run.status
    if status in ("running", "queued"):
        raise LRCError(f"run {run.id} is still {status} (pid {run.status_info.get('pid')}); stop it before resuming")
    if status == "completed":
        raise LRCError(f"run {run.id} already completed; start a new run instead")
    state = read_trainer_state(run.path / CHECKPOINT)
    _trim_events(run, state["step"])
    return state


def _trim_events(run: Run, step: int) -> None:
    """Keep the events up to the checkpoint's step (and the end event of the interruption goes too)."""
    from .runs import atomic_write_text

    kept = [e for e in run.iter_events() if e.get("type") != "end" and (not isinstance(e.get("step"), (int, float))
                                                                       or e["step"] <= step)]
    atomic_write_text(run.events_path, "".join(json.dumps(e, allow_nan=True) + "\n" for e in kept))


def _execute(run: Run, cfg: DistillConfig, should_stop: StopCheck | None, kind: str, data: TaskData | None,
             teacher_spec: str | None = None, backbone: str | None = None,
             resume_from: Path | None = None) -> Iterator[dict[str, Any]]:
    should_stop = should_stop or (lambda: False)
    started = time.time()
    run.set_status("running", started=started)
    try:
        data = data or load_data(cfg)
        task = data.task
        set_seed(cfg.seed)  # the student's random init (and head) must follow the run's seed, for reproducible runs
        if kind == "teacher":
            tokenizer = load_tokenizer(backbone)
            student = load_classifier(backbone, task)
            teacher, layer_map, how = None, [], f"Fine-tuned from {backbone} on the labels."
        else:
            tokenizer = load_tokenizer(teacher_spec)
            teacher = load_classifier(teacher_spec, task)
            if teacher.config.num_labels != task.num_labels:
                raise LRCError(f"teacher {teacher_spec} has {teacher.config.num_labels} outputs but {task.name} "
                               f"needs {task.num_labels}")
            n_teacher = teacher.config.num_hidden_layers
            layer_map = cfg.layer_map or uniform_layer_map(cfg.student.layers, n_teacher)
            check_layer_map(layer_map, n_teacher)
            student, init = build_student(cfg.student, teacher, task, layer_map)
            how = (f"Distilled with LRC-BERT from teacher `{teacher_spec}` (layer map {layer_map}, student init: "
                   f"{init}).")
            if kind == "finetune":  # the no-teacher baseline: same student and init, trained on the labels alone
                how = f"Fine-tuned on the labels alone (student init: {init}; teacher `{teacher_spec}` only for init)."
        card_cfg = {**cfg.to_dict(), "teacher": teacher_spec or backbone}
        model_dir = run.path / ("model" if kind == "teacher" else "student")

        def on_save(model, projections, tag: str) -> None:
            save_model_atomic(model, tokenizer, model_dir, task, model_card(task, card_cfg, how),
                              {"kind": kind, "tag": tag, "layer_map": layer_map})
            save_projections(projections, run.path / "projections.safetensors")

        distiller = Distiller(cfg, data, tokenizer, student, None if kind == "finetune" else teacher,
                              layer_map if kind == "distill" else [], should_stop=should_stop,
                              on_save=on_save, accelerator=make_accelerator(cfg),
                              checkpoint_dir=run.path / CHECKPOINT, resume_from=resume_from,
                              checkpoint_extra={"kind": kind, "teacher_spec": teacher_spec, "backbone": backbone})
        last_eval: dict[str, dict[str, float]] = {}
        speeds: list[float] = []
        end: dict[str, Any] = {}
        for event in distiller.run():
            if event["type"] == "eval":
                last_eval[event["split"]] = event["metrics"]
            elif event["type"] == "step" and event["step"] > 1:
                speeds.append(event["samples_per_s"])
            elif event["type"] == "end":
                end = event
            run.append_event(event)
            yield event
        teacher_metrics = _teacher_metrics(distiller, teacher) if teacher is not None and end.get("status") == "completed" else {}
        summary = {
            "kind": kind, "task": task.name, "status": end.get("status", "failed"), "message": end.get("message", ""),
            "steps": end.get("step", 0), "total_steps": distiller.total_steps, "metrics": last_eval,
            "main_metric": task.main_metric,
            "score": main_score(task, next(iter(last_eval.values()))) if last_eval else None,
            "teacher": teacher_spec or backbone, "teacher_metrics": teacher_metrics,
            "teacher_score": main_score(task, next(iter(teacher_metrics.values()))) if teacher_metrics else None,
            "student_params": count_parameters(student),
            "teacher_params": count_parameters(teacher) if teacher is not None else None,
            "layer_map": layer_map, "train_examples": len(data.train),
            "samples_per_s": sum(speeds) / len(speeds) if speeds else None,
            "seconds": time.time() - started, "model_dir": str(model_dir),
            "checkpoint": str(run.path / CHECKPOINT) if (run.path / CHECKPOINT).exists() else None,
        }
        if resume_from is not None:
            summary["resumed"] = True
        run.write_summary(summary)
        run.set_status(summary["status"], finished=time.time())
        distiller.accelerator.wait_for_everyone()  # the other processes read this status (e.g. a teacher's) next
    except LRCError as exc:
        _fail(run, str(exc))
        raise
    except torch.OutOfMemoryError:
        message = f"out of memory at batch size {cfg.batch_size}; try a batch size of {max(1, cfg.batch_size // 2)}"
        _fail(run, message)
        raise LRCError(message) from None
    except BaseException as exc:
        from .train import is_disk_full

        if is_disk_full(exc):
            message = (f"not enough disk space to save into {run.path}; free some space and resume the run "
                       f"(--resume, or Resume in the app); the previous checkpoint and model are intact")
            _fail(run, message)
            raise LRCError(message) from None
        _fail(run, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        raise


def _fail(run: Run, message: str, trace: str | None = None) -> None:
    """Record a failure; best effort, since the failure may be a full disk that refuses these writes too."""
    event = {"type": "end", "status": "failed", "message": message}
    try:
        run.append_event(event)
        run.set_status("failed", message=message, finished=time.time(), **({"traceback": trace} if trace else {}))
    except OSError:
        pass


def _teacher_metrics(distiller: Distiller, teacher) -> dict[str, dict[str, float]]:
    results = {}
    for name, ds in distiller.dev_sets.items():
        out = predict_dataset(teacher, ds, distiller.tokenizer, distiller.cfg.batch_size * 2, distiller.accelerator)
        if out is not None:
            results[name] = compute_metrics(distiller.task, *out)
    return results


def evaluate_model(model_spec: str, cfg: DistillConfig) -> dict[str, dict[str, float]]:
    """Dev metrics of any saved classifier on a task (used by `lrc eval`)."""
    data = load_task_data(cfg.task, cfg.data_dir, 0, cfg.max_eval_examples, cfg.seed, train_file=cfg.train_file,
                          dev_file=cfg.dev_file, text_column=cfg.text_column, text_pair_column=cfg.text_pair_column,
                          label_column=cfg.label_column, splits=("dev",) if not cfg.train_file else ("train", "dev"))
    path = resolve_model_path(model_spec)
    model = load_classifier(path, data.task)
    tokenizer = load_tokenizer(path)
    acc = make_accelerator(cfg)
    model.to(acc.device)
    results = {}
    for name, ds in data.dev.items():
        tok = tokenize(ds, tokenizer, cfg.max_seq_length)
        logits, labels = predict_dataset(model, tok, tokenizer, cfg.batch_size * 2, acc)
        results[name] = compute_metrics(data.task, logits, labels)
    return results
