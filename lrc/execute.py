"""One run, start to finish, in its folder: load data and models, train with the Distiller, save, summarise.

`execute` is shared by the three kinds of run: a teacher fine-tuned on the labels (`kind="teacher"`), a student
distilled from a teacher (`"distill"`), and the same student trained on the labels alone (`"finetune"`, the
no-teacher baseline). Every event is appended to the run's events.jsonl here, so the CLI, the app and a later
reader see one stream. `lrc.pipeline` (distillation, resuming) and `lrc.teacher` (default teachers) call it.
"""

from __future__ import annotations

import json
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from accelerate.utils import set_seed
from safetensors.torch import save_file

from .checkpoints import CHECKPOINT, is_disk_full
from .config import DistillConfig
from .data import TaskData, load_task_data, token_lengths, tokenize
from .devices import make_accelerator
from .errors import LRCError
from .evaluation import predict_dataset
from .heads import pooling_of
from .metrics import beats_constant, compute_metrics, constant_score, main_score
from .models import (
    Projections,
    backbone_of,
    build_student,
    check_layer_map,
    count_parameters,
    load_classifier,
    load_tokenizer,
    resolve_model_path,
    uniform_layer_map,
)
from .recipes import CPU_LENGTH_CAP, GPU_LENGTH_CAP, length_from_data
from .runs import Run, atomic_swap_dir, atomic_write_json
from .tasks import TaskSpec
from .train import Distiller
from .transfer import add_transfer_set

StopCheck = Callable[[], bool]


def load_data(cfg: DistillConfig, max_train_examples: int | None = None) -> TaskData:
    """The run's examples; `max_train_examples` replaces the config's cap (a teacher takes all of the rows)."""
    return load_task_data(
        cfg.task, cfg.data_dir, cfg.max_train_examples if max_train_examples is None else max_train_examples,
        cfg.max_eval_examples, cfg.seed, train_file=cfg.train_file, dev_file=cfg.dev_file,
        text_column=cfg.text_column, text_pair_column=cfg.text_pair_column, label_column=cfg.label_column,
    )


def resolve_length(cfg: DistillConfig, data: TaskData, tokenizer, model_max: int | None = None) -> int:
    """The sequence length a run uses: the config's, else what the training rows need (lrc.recipes), capped at
    128 on a CPU and at the model's positions elsewhere."""
    if cfg.max_seq_length:
        return int(cfg.max_seq_length)
    on_cpu = cfg.device == "cpu" or not torch.cuda.is_available()
    cap = CPU_LENGTH_CAP if on_cpu else min(GPU_LENGTH_CAP, model_max or GPU_LENGTH_CAP)
    return length_from_data(token_lengths(data.train, tokenizer), cap)


# ---- saving -----------------------------------------------------------------------------------------------------

def model_card(task: TaskSpec, cfg: dict[str, Any], how: str, pooling: str,
               metrics: dict[str, Any] | None = None) -> str:
    load = ("Load it with `AutoModelForSequenceClassification.from_pretrained(path)`." if pooling == "cls" else
            "Its classifier reads the mean of the last layer (lrc's `lrc_bert_mean` model type): `import lrc` first, "
            "then `AutoModelForSequenceClassification.from_pretrained(path)`.")
    lines = [
        "---", "library_name: transformers", "pipeline_tag: text-classification", "tags: [lrc-bert, distillation]",
        "---", "", f"# {task.name} model made with LRC Studio", "", how, "", load, "",
        "## Settings", "```json", json.dumps(cfg, indent=2, sort_keys=True, default=str), "```",
    ]
    if metrics:
        lines += ["", "## Dev metrics", "```json", json.dumps(metrics, indent=2, sort_keys=True), "```"]
    return "\n".join(lines) + "\n"


def save_model_atomic(model, tokenizer, target: Path, task: TaskSpec, card: str, extra: dict[str, Any]) -> None:
    """save_pretrained into a temp folder, then swap it in: a crash mid-save leaves the previous model intact."""
    def write(tmp: Path) -> None:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        atomic_write_json(tmp / "lrc_model.json", {"task": task.name, "labels": list(task.label_names), **extra})

    atomic_swap_dir(Path(target), write)


def save_projections(projections: Projections | None, path: Path) -> None:
    if projections is None:
        return
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in projections.state_dict().items()}
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={"shared": str(projections.shared)})
    tmp.replace(path)


# ---- one run ------------------------------------------------------------------------------------------------------

def execute(run: Run, cfg: DistillConfig, should_stop: StopCheck | None, kind: str, data: TaskData | None,
            teacher_spec: str | None = None, backbone: str | None = None,
            resume_from: Path | None = None, resume_state: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Train one run in `run`'s folder and yield its events; the summary and status are written at the end."""
    should_stop = should_stop or (lambda: False)
    started = time.time()
    run.set_status("running", started=started)
    try:
        data = data or load_data(cfg)
        task = data.task
        set_seed(cfg.seed)  # the student's random init (and head) must follow the run's seed, for reproducible runs
        if kind == "teacher":
            tokenizer = load_tokenizer(backbone)
            student = load_classifier(backbone, task, cfg.pooling)
            teacher, layer_map, how = None, [], f"Fine-tuned from {backbone} on the labels ({cfg.pooling} pooling)."
            source_backbone = backbone
        else:
            tokenizer = load_tokenizer(teacher_spec)
            teacher = load_classifier(teacher_spec, task)
            if teacher.config.num_labels != task.num_labels:
                raise LRCError(f"teacher {teacher_spec} has {teacher.config.num_labels} outputs but {task.name} "
                               f"needs {task.num_labels}")
            n_teacher = teacher.config.num_hidden_layers
            layer_map = cfg.layer_map or uniform_layer_map(cfg.student.layers, n_teacher)
            check_layer_map(layer_map, n_teacher)
            source_backbone = backbone_of(teacher_spec)
            pooling = None if cfg.pooling == "auto" else cfg.pooling
            student, init = build_student(cfg.student, teacher, task, layer_map, source_backbone, pooling)
            how = (f"Distilled with LRC-BERT from teacher `{teacher_spec}` (layer map {layer_map}, student init: "
                   f"{init}).")
            if kind == "finetune":  # the no-teacher baseline: same student and init, trained on the labels alone
                how = f"Fine-tuned on the labels alone (student init: {init}; teacher `{teacher_spec}` only for init)."
        length = int((resume_state or {}).get("max_seq_length") or
                     resolve_length(cfg, data, tokenizer, getattr(student.config, "max_position_embeddings", None)))
        train_cfg = cfg.override(max_seq_length=length)
        labelled = len(data.train)
        if kind == "distill" and cfg.transfer != "none":  # more inputs for the teacher to label (lrc.transfer)
            data, _added = add_transfer_set(data, cfg.transfer, cfg.transfer_factor, cfg.transfer_prob,
                                            teacher.get_input_embeddings().weight, tokenizer, cfg.data_dir)
        pooling_used = pooling_of(student)
        card_cfg = {**train_cfg.to_dict(), "teacher": teacher_spec or backbone}
        model_dir = run.path / ("model" if kind == "teacher" else "student")

        def on_save(model, projections, tag: str) -> None:
            save_model_atomic(model, tokenizer, model_dir, task, model_card(task, card_cfg, how, pooling_used),
                              {"kind": kind, "tag": tag, "layer_map": layer_map, "backbone": source_backbone,
                               "pooling": pooling_used, "max_seq_length": length})
            save_projections(projections, run.path / "projections.safetensors")

        distiller = Distiller(train_cfg, data, tokenizer, student, None if kind == "finetune" else teacher,
                              layer_map if kind == "distill" else [], should_stop=should_stop,
                              on_save=on_save, accelerator=make_accelerator(train_cfg),
                              checkpoint_dir=run.path / CHECKPOINT, resume_from=resume_from,
                              checkpoint_extra={"kind": kind, "teacher_spec": teacher_spec, "backbone": backbone,
                                                "max_seq_length": length})
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
        completed = end.get("status") == "completed"
        teacher_metrics = _teacher_metrics(distiller, teacher) if teacher is not None and completed else {}
        score = main_score(task, next(iter(last_eval.values()))) if last_eval else None
        constant = constant_score(task, next(iter(data.dev.values()))["label"]) if data.dev else None
        summary = {
            "kind": kind, "task": task.name, "status": end.get("status", "failed"), "message": end.get("message", ""),
            "steps": end.get("step", 0), "total_steps": distiller.total_steps, "metrics": last_eval,
            "main_metric": task.main_metric, "score": score,
            "constant_score": constant, "beats_constant": beats_constant(score, constant),
            "teacher": teacher_spec or backbone, "teacher_metrics": teacher_metrics,
            "teacher_score": main_score(task, next(iter(teacher_metrics.values()))) if teacher_metrics else None,
            "student_params": count_parameters(student),
            "teacher_params": count_parameters(teacher) if teacher is not None else None,
            "layer_map": layer_map, "train_examples": labelled, "transfer_examples": len(data.train) - labelled,
            "max_seq_length": length,
            "pooling": pooling_used, "init": how,
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
        fail(run, str(exc))
        raise
    except torch.OutOfMemoryError:
        message = f"out of memory at batch size {cfg.batch_size}; try a batch size of {max(1, cfg.batch_size // 2)}"
        fail(run, message)
        raise LRCError(message) from None
    except BaseException as exc:
        if is_disk_full(exc):
            message = (f"not enough disk space to save into {run.path}; free some space and resume the run "
                       f"(--resume, or Resume in the app); the previous checkpoint and model are intact")
            fail(run, message)
            raise LRCError(message) from None
        fail(run, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        raise


def fail(run: Run, message: str, trace: str | None = None) -> None:
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
    """Dev metrics of any saved classifier on a task (used by `lrc eval`), at the length it was trained with
    unless --max-seq-length says otherwise."""
    data = load_task_data(cfg.task, cfg.data_dir, 0, cfg.max_eval_examples, cfg.seed, train_file=cfg.train_file,
                          dev_file=cfg.dev_file, text_column=cfg.text_column, text_pair_column=cfg.text_pair_column,
                          label_column=cfg.label_column, splits=("dev",) if not cfg.train_file else ("train", "dev"))
    path = resolve_model_path(model_spec)
    model = load_classifier(path, data.task)
    tokenizer = load_tokenizer(path)
    length = cfg.max_seq_length or _saved_length(Path(path)) or CPU_LENGTH_CAP
    acc = make_accelerator(cfg)
    model.to(acc.device)
    results = {}
    for name, ds in data.dev.items():
        tok = tokenize(ds, tokenizer, length)
        logits, labels = predict_dataset(model, tok, tokenizer, cfg.batch_size * 2, acc)
        results[name] = compute_metrics(data.task, logits, labels)
    return results


def _saved_length(path: Path) -> int | None:
    try:
        return int(json.loads((path / "lrc_model.json").read_text()).get("max_seq_length") or 0) or None
    except (OSError, ValueError, json.JSONDecodeError):
        return None
