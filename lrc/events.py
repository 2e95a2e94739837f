"""Every record a run writes, typed in one place: the events of events.jsonl, the run's status, its summary.

A run is a stream of plain JSON objects (so the CLI, the run store, the app and a later reader of the file all
read the same thing), but each kind has exactly the fields listed here, and the CLI, the store and the app match
on these names instead of spelling the strings themselves. `EventType` and `RunStatus` are `str` enums: a member
*is* its string (`RunStatus.COMPLETED == "completed"`, and JSON writes it as "completed"), so files written
before these types existed read the same.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal, TypedDict, Union


class EventType(str, Enum):
    START = "start"  # the Distiller is set up: steps, stage split, device, precision
    STEP = "step"  # a loss point: the terms, learning rate, speed
    STAGE = "stage"  # stage 2 begins
    EVAL = "eval"  # dev metrics of one split
    SNAPSHOT = "snapshot"  # matched-layer alignment on the probe batch
    CHECKPOINT = "checkpoint"  # a resumable checkpoint was saved
    RESUME = "resume"  # the run continued from a checkpoint
    TEACHER_READY = "teacher_ready"  # the default teacher is trained (or was cached)
    STATUS = "status"  # a line of news (resuming, robustness evaluation)
    END = "end"  # the run (or the teacher's phase of it) ended


class RunStatus(str, Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    STOPPED = "stopped"
    DIVERGED = "diverged"
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # said by the store when a running run's process is gone; never written


TERMINAL: tuple[RunStatus, ...] = (RunStatus.COMPLETED, RunStatus.STOPPED, RunStatus.DIVERGED, RunStatus.FAILED,
                                   RunStatus.INTERRUPTED)
# a run's event stream carries its default teacher's events too, marked with this phase
TEACHER_PHASE = "teacher"


class _Event(TypedDict, total=False):
    phase: str  # "teacher" for the default teacher's events inside a distillation's stream


class StartEvent(_Event):
    type: Literal["start"]
    total_steps: int
    stage1_steps: int
    device: str
    precision: str
    num_processes: int
    train_examples: int
    layer_map: list[int]
    distilling: bool
    teacher_cache: dict[str, Any] | None


class StepEvent(_Event, total=False):
    type: Literal["step"]
    stage: int
    step: int
    total_steps: int
    epoch: int
    lr: float
    samples_per_s: float
    elapsed: float
    loss: float
    cos_nce: float  # only the terms the stage trains are present
    soft: float
    hard: float


class StageEvent(_Event):
    type: Literal["stage"]
    stage: int
    step: int


class EvalEvent(_Event):
    type: Literal["eval"]
    stage: int
    step: int
    split: str
    metrics: dict[str, float]


class SnapshotEvent(_Event):
    type: Literal["snapshot"]
    step: int
    layers: list[int]
    cos_own: list[float]
    cos_neg: list[float]
    margin: list[float]


class CheckpointEvent(_Event):
    type: Literal["checkpoint"]
    step: int


class ResumeEvent(_Event):
    type: Literal["resume"]
    step: int
    # "from": the checkpoint folder (a Python keyword, so not a TypedDict field name here)


class TeacherReadyEvent(_Event):
    type: Literal["teacher_ready"]
    path: str
    cached: bool
    score: float | None
    metric: str | None
    seconds: float | None


class StatusEvent(_Event):
    type: Literal["status"]
    message: str


class EndEvent(_Event, total=False):
    type: Literal["end"]
    status: str  # a RunStatus value
    step: int
    message: str
    elapsed: float


Event = Union[StartEvent, StepEvent, StageEvent, EvalEvent, SnapshotEvent, CheckpointEvent, ResumeEvent,
              TeacherReadyEvent, StatusEvent, EndEvent]


class Summary(TypedDict, total=False):
    """summary.json: what a finished (or stopped) run says about itself."""

    kind: str  # distill | finetune | teacher
    task: str
    status: str  # a RunStatus value
    message: str
    steps: int
    total_steps: int
    metrics: dict[str, dict[str, float]]  # per dev split
    main_metric: str
    score: float | None  # the main metric on the (first) dev split
    constant_score: float | None  # the best constant answer's score on the same split
    beats_constant: bool | None  # score > constant_score + metrics.CONSTANT_MARGIN
    teacher: str
    teacher_metrics: dict[str, dict[str, float]]
    teacher_score: float | None
    student_params: int
    teacher_params: int | None
    layer_map: list[int]
    train_examples: int  # labelled rows
    transfer_examples: int  # transfer-set rows (no gold label)
    max_seq_length: int
    pooling: str
    init: str  # how the model was made, in words
    samples_per_s: float | None
    seconds: float
    model_dir: str
    checkpoint: str | None
    resumed: bool


def is_teacher_event(event: dict[str, Any]) -> bool:
    return event.get("phase") == TEACHER_PHASE
