"""The run's settings as dataclasses: every knob is one field, with its help, range and group on the field.

Every **(choice)** of LRC_METHOD.md is a knob here with the method's named default, so `DistillConfig()` is
the paper's setting. Each value is checked against its own field (`lrc.knobs`); `validate()` adds only the
checks that involve several knobs. Presets are YAML files in `lrc/presets/` whose keys are these knobs.

A run's config.json holds exactly `DistillConfig.to_dict()`; who started a run and when is the run's metadata
(`lrc.runs`), never a config key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

import yaml

from .errors import ConfigError
from .knobs import check_all, knob, knob_map, knobs

PRESET_DIR = Path(__file__).resolve().parent / "presets"

Representation = Literal["tokens", "cls", "mean"]
Negatives = Literal["batch", "bank"]
Projection = Literal["per_layer", "shared"]
Distance = Literal["angular", "mse"]
Init = Literal["auto", "pretrained", "finetuned_teacher", "random", "checkpoint"]
Pooling = Literal["auto", "cls", "mean"]
PerturbNorm = Literal["token", "sequence", "relative"]
Transfer = Literal["none", "words", "tasks"]
Precision = Literal["auto", "no", "fp16", "bf16"]
Device = Literal["auto", "cpu", "cuda"]
CompileBackend = Literal["inductor", "aot_eager", "eager", "cudagraphs"]

# values older run folders and presets may hold, and what they mean now
_LEGACY_INIT = {"teacher": "finetuned_teacher"}


@dataclass
class StudentConfig:
    """The student's shape, or a checkpoint to start from (paper default: TinyBERT-4 shape, 4L/312/1200/12)."""

    layers: int = knob(4, group="student", label="Layers", ge=1, le=48,
                       help="Transformer layers of the student (paper: 4). Student layer m learns from teacher layer "
                            "m*N/M.")
    hidden: int = knob(312, group="student", label="Hidden", ge=1, le=8192,
                       help="Hidden width (paper: 312). Equal to the teacher's, the student can start from its "
                            "backbone's layers.")
    heads: int = knob(12, group="student", label="Heads", ge=1, le=128,
                      help="Attention heads (paper: 12); must divide the hidden width.")
    ffn: int = knob(1200, group="student", label="FFN", ge=1, le=32768, help="Feed-forward width (paper: 1200).")
    init: Init = knob("auto", group="student", label="Initialisation",
                      help="auto: the teacher backbone's pre-trained layers when the shapes match (DistilBERT style), "
                           "else random. pretrained: those layers, or an error. finetuned_teacher: the fine-tuned "
                           "teacher's layers (hides what distillation adds). checkpoint: student_checkpoint.")
    checkpoint: str | None = knob(None, group="student", app="none",
                                  help="Start the student from this model (with init: checkpoint).")
    dropout: float = knob(0.1, group="student", app="api", ge=0.0, lt=1.0,
                          help="Hidden and attention dropout (BERT's 0.1); 0 makes runs independent of the process "
                               "count.")


@dataclass
class DistillConfig:
    # ---- what to distil
    task: str = knob("sst2", group="task", app="none", eval_flag=True,
                     help="GLUE task (cola sst2 mrpc stsb qqp mnli qnli rte wnli) or custom.")
    teacher: str | None = knob(None, group="teacher", app="none",
                               help="Fine-tuned teacher: run folder, model folder or hub id. Default: the bundled "
                                    "MiniLM, fine-tuned on the task first with the task's recipe, then cached.")
    student: StudentConfig = field(default_factory=StudentConfig)

    # ---- how a default teacher is fine-tuned (None: the task's recipe, lrc.recipes)
    teacher_epochs: float | None = knob(None, group="teacher", label="Teacher epochs", gt=0.0, le=1000.0,
                                        help="Epochs of fine-tuning when the teacher must be made first (empty: the "
                                             "task's recipe).")
    teacher_lr: float | None = knob(None, group="teacher", app="api", gt=0.0, le=1.0,
                                    help="Learning rate of that fine-tuning (empty: the task's recipe).")
    teacher_batch_size: int | None = knob(None, group="teacher", app="api", ge=1, le=4096,
                                          help="Batch size of that fine-tuning (empty: the task's recipe).")
    teacher_warmup_ratio: float | None = knob(None, group="teacher", app="api", ge=0.0, le=1.0,
                                              help="Warm-up share of that fine-tuning (empty: the task's recipe).")
    teacher_max_train_examples: int = knob(0, group="teacher", app="api", ge=0,
                                           help="Training rows for that fine-tuning (0 = all of the task's rows, "
                                                "whatever the student's cap).")
    pooling: Pooling = knob("auto", group="teacher", app="api",
                            help="What the classifier head reads, in the teacher lrc fine-tunes and in the student: "
                                 "cls (BERT's pooler on [CLS]) or mean (masked mean of the last layer). auto: the "
                                 "measured best for the backbone (lrc.recipes).")

    # ---- the loss
    use_cos_nce: bool = knob(True, group="loss", label="COS-NCE", flag="cos-nce",
                             help="The contrastive representation loss. Off: plain knowledge distillation (soft + "
                                  "hard labels).")
    representation: Representation = knob("tokens", group="loss", app="api",
                                          help="What COS-NCE compares: every token, the [CLS] vector, or the mean.")
    negatives: Negatives = knob("batch", group="loss",
                                help="batch: the other samples of the batch are the negatives; bank: K negatives "
                                     "from a memory bank of the training set.")
    num_negatives: int = knob(15, group="loss", label="K", ge=1, le=65536,
                              help="K, the number of negatives drawn from the bank.")
    distance: Distance = knob("angular", group="loss", app="api",
                              help="angular: COS-NCE; mse: the ablation that replaces the angle with MSE on the "
                                   "vectors.")
    projection: Projection = knob("per_layer", group="loss", app="api",
                                  help="One learned student-to-teacher map per mapped layer, or one shared.")
    layer_map: list[int] | None = knob(None, group="loss", app="api",
                                       help="Teacher layer (1-based) per student layer, e.g. 2,4,6 (empty: uniform "
                                            "m*N/M).")
    temperature: float = knob(1.1, group="loss", label="Temperature T", gt=0.0, le=100.0, step=0.1,
                              help="Soft-label temperature T (paper: 1.1).")
    alpha: float = knob(1.0, group="loss", label="α (COS-NCE)", ge=0.0, le=1e4, step=0.5,
                        help="Weight of COS-NCE in stage 2 (paper: 1).")
    beta: float = knob(1.0, group="loss", label="β (soft)", ge=0.0, le=1e4, step=0.5,
                       help="Weight of the soft-label loss (paper: 1).")
    gamma: float = knob(3.0, group="loss", label="γ (hard)", ge=0.0, le=1e4, step=0.5,
                        help="Weight of the hard-label loss (paper: 3).")

    # ---- the schedule
    two_stage: bool = knob(True, group="schedule", app="api", off_flag="one-stage",
                           help="Stage 1 (COS-NCE only) before stage 2 (everything). Off: the total loss from the "
                                "start.")
    stage1_fraction: float = knob(0.8, group="schedule", label="Stage-1 share", ge=0.0, le=1.0, widget="slider",
                                  step=0.05, help="Share of the steps spent in stage 1 (paper: 0.8).")
    epochs: float = knob(3.0, group="schedule", ge=0.0, le=1000.0,
                         help="Passes over the training examples, both stages together (unless max_steps is set).")
    max_steps: int = knob(0, group="schedule", app="api", ge=0, le=10**9, units="steps",
                          help="Total optimizer steps; overrides epochs when > 0.")
    batch_size: int = knob(32, group="schedule", ge=1, le=4096,
                           help="Examples per step (per process); with in-batch negatives each sample has batch-1 "
                                "negatives.")
    lr: float = knob(5e-5, group="schedule", label="Learning rate", gt=0.0, le=1.0, step=1e-5,
                     help="Peak AdamW learning rate (linear warm-up and decay, restarted at the stage boundary).")
    weight_decay: float = knob(0.01, group="schedule", app="api", ge=0.0, le=1e4, help="AdamW weight decay.")
    warmup_ratio: float = knob(0.1, group="schedule", app="api", ge=0.0, le=1.0,
                               help="Share of each stage's steps spent warming the learning rate up.")
    max_grad_norm: float = knob(1.0, group="schedule", app="api", ge=0.0, le=1e4,
                                help="Gradient clipping norm (0 = no clipping).")

    # ---- gradient perturbation
    perturb: bool = knob(True, group="perturbation", label="Gradient perturbation",
                         help="Move the student's embeddings along the loss gradient each step and train on the "
                              "moved pass (paper: on).")
    epsilon: float = knob(1.0, group="perturbation", label="ε", ge=0.0, le=100.0, step=0.1,
                          help="Perturbation size ε (paper: 1, per token).")
    perturb_norm: PerturbNorm = knob("token", group="perturbation", app="api",
                                     help="How ε is measured: token (each token's move has length ε, the spec), "
                                          "sequence (the whole sequence's move has length ε, as FGM), relative (each "
                                          "token moves by ε times its embedding's length).")

    # ---- transfer set (lrc.transfer)
    transfer: Transfer = knob("none", group="transfer", label="Transfer set",
                              help="More inputs for the teacher to label: words (each row copied with words swapped "
                                   "for their embedding neighbours, as TinyBERT) or tasks (the other GLUE tasks' "
                                   "inputs). Their rows have no gold label; the hard loss skips them.")
    transfer_factor: int = knob(4, group="transfer", label="Transfer size", ge=0, le=64,
                                help="Transfer rows per training row (words: copies of each row; tasks: at most "
                                     "this many times the task's rows).")
    transfer_prob: float = knob(0.4, group="transfer", app="api", ge=0.0, le=1.0,
                                help="words: the chance each word of a copy is replaced (TinyBERT: 0.4).")

    # ---- data
    data_dir: str | None = knob(None, group="data", app="none", eval_flag=True,
                                help="Local GLUE folder (classic glue_data layout); default: $GLUE_DIR, else the hub.")
    train_file: str | None = knob(None, group="data", app="none", eval_flag=True,
                                  help="Task custom: your own CSV/TSV/JSONL training file.")
    dev_file: str | None = knob(None, group="data", app="none", eval_flag=True,
                                help="Task custom: your own dev file.")
    text_column: str = knob("text", group="data", app="none", eval_flag=True,
                            help="Task custom: the text column.")
    text_pair_column: str | None = knob(None, group="data", app="none", eval_flag=True,
                                        help="Task custom: the second text column of a pair task.")
    label_column: str = knob("label", group="data", app="none", eval_flag=True,
                             help="Task custom: the label column.")
    max_train_examples: int = knob(0, group="data", label="Max train examples", ge=0, le=10**8,
                                   help="Use at most N training examples (0 = all).")
    max_eval_examples: int = knob(0, group="data", label="Max dev examples", ge=0, le=10**8, eval_flag=True,
                                  help="Evaluate on at most N dev examples (0 = all).")
    max_seq_length: int | None = knob(None, group="data", label="Max sequence length", ge=1, le=512,
                                      eval_flag=True, units="tokens",
                                      help="Truncate inputs to N tokens (empty: from the data, the 99th percentile "
                                           "of the training rows' lengths rounded up to a multiple of 8, at most 128 "
                                           "on a CPU).")

    # ---- running
    seed: int = knob(42, group="running", ge=0, le=2**32 - 1, eval_flag=True,
                     help="Random seed (data order, init, dropout, sampling).")
    log_every: int = knob(10, group="running", label="Log every", ge=1, le=10**6, units="steps",
                          help="A loss point every N steps.")
    eval_every: int = knob(0, group="running", label="Eval every", ge=0, le=10**9, units="steps",
                           help="Also evaluate on dev every N steps (0 = at the end of each stage).")
    save_every: int = knob(0, group="running", app="api", ge=0, le=10**9, units="steps",
                           help="Checkpoint every N steps (0 = only when stopped or finished).")
    snapshot_every: int = knob(0, group="running", app="api", ge=0, le=10**9, units="steps",
                               help="Record matched-layer alignment on a fixed probe set every N steps (0 = never).")
    probe_examples: int = knob(64, group="running", app="api", ge=1, le=4096,
                               help="Dev examples in that fixed probe set.")
    device: Device = knob("auto", group="running", app="none", eval_flag=True,
                          help="auto | cpu | cuda (auto: a GPU when one is visible).")
    mixed_precision: Precision = knob("auto", group="running", app="api", eval_flag=True,
                                      help="auto: bf16 on GPUs that have it, fp16 on other GPUs, fp32 on CPU.")

    # ---- speed
    teacher_cache: bool = knob(False, group="speed", app="api",
                               help="Compute the frozen teacher's outputs for the training set once and reuse them "
                                    "(cache in $LRC_CACHE_DIR, default ~/.cache/lrc/teacher).")
    length_grouping: bool = knob(True, group="speed", app="api",
                                 help="Batches of rows of similar length (less padding); off: plain shuffled batches.")
    num_workers: int = knob(0, group="speed", app="none", ge=0, le=64, help="DataLoader worker processes.")
    compile: bool = knob(False, group="speed", app="none",
                         help="torch.compile the student's transformer blocks (lrc.models.compile_blocks); the "
                              "first steps wait for the compiler. For long GPU runs, slower on CPU.")
    compile_backend: CompileBackend = knob("inductor", group="speed", app="none",
                                           help="torch.compile backend (aot_eager and eager compile nothing).")

    # ---- checks ------------------------------------------------------------------------------------------------
    def validate(self) -> "DistillConfig":
        """Check every knob, then the rules that tie knobs together; raise one ConfigError that names the knob,
        the bad value and the fix."""
        if not isinstance(self.student, StudentConfig):
            raise ConfigError("'student' must be a mapping of layers/hidden/heads/ffn/init/checkpoint/dropout")
        check_all(self)
        s = self.student
        if s.hidden % s.heads:
            raise ConfigError(f"student.hidden ({s.hidden}) must be divisible by student.heads ({s.heads})")
        if s.init == "checkpoint" and not s.checkpoint:
            raise ConfigError("student.init is 'checkpoint' but no student.checkpoint path or id was given")
        if self.epochs <= 0 and not self.max_steps:
            raise ConfigError(f"epochs must be > 0 (or set max_steps); got {self.epochs!r}")
        if self.negatives == "batch" and self.use_cos_nce and self.alpha > 0 and self.batch_size < 2:
            raise ConfigError("in-batch negatives need batch_size >= 2 (or use negatives: bank)")
        if self.max_train_examples and self.negatives == "bank" and self.num_negatives >= self.max_train_examples:
            raise ConfigError(
                f"num_negatives ({self.num_negatives}) must be smaller than the number of training examples "
                f"({self.max_train_examples})"
            )
        if self.layer_map is not None:
            if len(self.layer_map) != s.layers:
                raise ConfigError(f"layer_map has {len(self.layer_map)} entries but the student has {s.layers} layers")
            if any(x < 1 for x in self.layer_map):
                raise ConfigError("layer_map entries are 1-based teacher layer numbers (integers >= 1)")
        if not self.use_cos_nce and self.alpha == 0 and self.beta == 0 and self.gamma == 0:
            raise ConfigError("all loss weights are zero: nothing would be trained")
        return self

    # ---- (de)serialisation -------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DistillConfig":
        """A config from config.json or a preset: unknown keys are refused by name, values are converted to the
        knob's type (YAML reads `1e-4` as text), and legacy spellings are read as what they mean now."""
        data = dict(data or {})
        student = data.pop("student", None) or {}
        if not isinstance(student, dict):
            raise ConfigError("'student' must be a mapping of layers/hidden/heads/ffn/init/checkpoint/dropout")
        _reject_unknown(cls, data, "config")
        _reject_unknown(StudentConfig, student, "student")
        student = dict(student)
        if student.get("init") in _LEGACY_INIT:
            student["init"] = _LEGACY_INIT[student["init"]]
        flat = {**data, **{f"student_{k}": v for k, v in student.items()}}
        by_name = knob_map(cls)
        coerced = {name: by_name[name].coerce(value) for name, value in flat.items()}
        return cls().override(**coerced, _keep_none=True)

    def override(self, _keep_none: bool = False, **changes: Any) -> "DistillConfig":
        """A copy with some knobs changed, by flat name (`lr`, `student_layers`); None means "leave it" unless
        `_keep_none` (a config file's explicit null)."""
        by_name = knob_map(DistillConfig)
        unknown = sorted(k for k in changes if k not in by_name)
        if unknown:
            raise ConfigError(f"unknown config key(s): {', '.join(unknown)}; known keys: {', '.join(sorted(by_name))}")
        top: dict[str, Any] = {}
        inner: dict[str, Any] = {}
        for name, value in changes.items():
            if value is None and not _keep_none:
                continue
            path = by_name[name].path
            (inner if len(path) == 2 else top)[path[-1]] = value
        student = replace(self.student, **inner) if inner else replace(self.student)
        return replace(self, student=student, **top)

    def flat(self) -> dict[str, Any]:
        """{flat knob name: value}: what the form, the API and the docs see."""
        return {k.name: k.get(self) for k in knobs(DistillConfig)}


def _reject_unknown(cls: type, data: dict[str, Any], where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {where} key(s): {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")


# ---- presets ---------------------------------------------------------------------------------------------------

def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset_description(name: str) -> str:
    path = PRESET_DIR / f"{name}.yaml"
    try:
        return str((yaml.safe_load(path.read_text()) or {}).get("description", ""))
    except (OSError, yaml.YAMLError):
        return ""


def load_preset(name_or_path: str) -> dict[str, Any]:
    """A preset by name (`quick-cpu`) or by path to a YAML file, as a plain dict of config fields."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown preset {name_or_path!r}; available: {', '.join(list_presets())}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"preset {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"preset {path} must be a mapping of config keys")
    data.pop("description", None)
    return data


def config_from_preset(name: str | None, **overrides: Any) -> DistillConfig:
    base = DistillConfig.from_dict(load_preset(name)) if name else DistillConfig()
    return base.override(**overrides)
