"""A whole distillation, from a config to a finished run folder, and resuming one that stopped.

The CLI, the app and the experiment runner call these generators and only display what they yield; the run
itself happens in `lrc.execute` (one run in its folder) and the default teacher comes from `lrc.teacher`.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Iterator

from .checkpoints import CHECKPOINT, read_trainer_state
from .config import DistillConfig
from .errors import LRCError
from .execute import evaluate_model, execute, fail, load_data, save_model_atomic
from .models import is_finetuned_for
from .runs import Run, RunStore, atomic_write_text
from .teacher import ensure_teacher, labels_only, run_teacher, teacher_cache_id, teacher_config

StopCheck = Callable[[], bool]

__all__ = ["run_distill", "resume_run", "prepare_resume", "resumable", "load_data", "evaluate_model",
           "ensure_teacher", "labels_only", "run_teacher", "teacher_cache_id", "teacher_config", "save_model_atomic",
           "CHECKPOINT"]


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
            for event in ensure_teacher(cfg, store, should_stop):
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
        fail(run, str(exc))
        raise
    return (yield from execute(run, cfg, should_stop, kind=kind, data=data, teacher_spec=teacher_spec))


# ---- resuming ---------------------------------------------------------------------------------------------------

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
    cfg = DistillConfig.from_dict(run.config)
    run.append_event({"type": "status", "message": f"resuming from the checkpoint at step {state['step']}"})
    return execute(run, cfg, should_stop, kind=state.get("kind", "distill"), data=None,
                   teacher_spec=state.get("teacher_spec"), backbone=state.get("backbone"),
                   resume_from=run.path / CHECKPOINT, resume_state=state)


def prepare_resume(run: Run) -> dict[str, Any]:
    """Check that a run can continue and cut its events back to its checkpoint; returns the checkpoint's state.

    Idempotent, so a queue (the app) can call it when a resume is asked for and again when it starts.
    """
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
    kept = [e for e in run.iter_events() if e.get("type") != "end" and (not isinstance(e.get("step"), (int, float))
                                                                       or e["step"] <= step)]
    atomic_write_text(run.events_path, "".join(json.dumps(e, allow_nan=True) + "\n" for e in kept))
