"""Configuration as dataclasses: one place where every knob, its default and its valid range live.

Every **(choice)** of LRC_METHOD.md is a field here with the method's named default. Presets are YAML files
in `assets/presets/` whose keys are these field names; `validate()` turns nonsense into one clear message.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

PRESET_DIR = Path(__file__).resolve().parent.parent / "assets" / "presets"

REPRESENTATIONS = ("tokens", "cls", "mean")
NEGATIVE_MODES = ("batch", "bank")
PROJECTIONS = ("per_layer", "shared")
DISTANCES = ("angular", "mse")
INITS = ("auto", "random", "teacher", "checkpoint")
PRECISIONS = ("auto", "no", "fp16", "bf16")
COMPILE_BACKENDS = ("inductor", "aot_eager", "eager", "cudagraphs")


@dataclass
class StudentConfig:
    """The student's shape, or a checkpoint to start from (paper default: TinyBERT-4 shape, 4L/312/1200/12)."""

    layers: int = 4
    hidden: int = 312
    heads: int = 12
    ffn: int = 1200
    init: str = "auto"  # auto = teacher layers when the widths match, else random
    checkpoint: str | None = None
    dropout: float = 0.1  # hidden and attention dropout (BERT's 0.1); 0 makes runs independent of process count


@dataclass
class DistillConfig:
    # what to distil
    task: str = "sst2"
    data_dir: str | None = None
    train_file: str | None = None  # task "custom": a user's CSV/TSV/JSONL
    dev_file: str | None = None
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    teacher: str | None = None  # hub id, local dir, run folder; None = bundled MiniLM fine-tuned on the task
    teacher_epochs: float = 2.0  # when the teacher must be fine-tuned first (bundled backbone or a raw encoder)
    teacher_lr: float = 1e-4
    student: StudentConfig = field(default_factory=StudentConfig)
    layer_map: list[int] | None = None  # teacher layer (1-based) per student layer; None = uniform m*N/M
    projection: str = "per_layer"

    # the loss
    representation: str = "tokens"
    negatives: str = "batch"
    num_negatives: int = 15  # K for the bank
    distance: str = "angular"  # "mse" is the ablation that replaces COS-NCE's angle with MSE on the vectors
    use_cos_nce: bool = True
    alpha: float = 1.0
    beta: float = 1.0
    gamma: float = 3.0
    temperature: float = 1.1

    # the schedule
    two_stage: bool = True
    stage1_fraction: float = 0.8
    perturb: bool = True
    epsilon: float = 1.0
    epochs: float = 3.0
    max_steps: int = 0  # > 0 overrides epochs
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    max_grad_norm: float = 1.0
    max_seq_length: int = 128
    max_train_examples: int = 0  # 0 = all
    max_eval_examples: int = 0
    seed: int = 42

    # running
    eval_every: int = 0  # also evaluate every N steps (0 = only at the end of each stage)
    log_every: int = 10
    save_every: int = 0  # checkpoint the student every N steps (0 = only at the end)
    mixed_precision: str = "auto"  # auto = bf16 on GPUs that have it, fp16 on other GPUs, fp32 on CPU
    device: str = "auto"  # auto | cpu | cuda
    snapshot_every: int = 0  # record matched-layer alignment on a fixed probe set every N steps (0 = never)
    probe_examples: int = 64
    teacher_cache: bool = False
    length_grouping: bool = True
    num_workers: int = 0
    compile: bool = False  # torch.compile the student's blocks (lrc.models.compile_blocks); for long GPU runs
    compile_backend: str = "inductor"  # torch.compile backend ("inductor"; "aot_eager"/"eager" compile nothing)

    def validate(self) -> "DistillConfig":
        """Check every field; raise one ConfigError naming the field, the bad value and the fix."""
        _choice("representation", self.representation, REPRESENTATIONS)
        _choice("negatives", self.negatives, NEGATIVE_MODES)
        _choice("projection", self.projection, PROJECTIONS)
        _choice("distance", self.distance, DISTANCES)
        _choice("student.init", self.student.init, INITS)
        _choice("mixed_precision", self.mixed_precision, PRECISIONS)
        _choice("compile_backend", self.compile_backend, COMPILE_BACKENDS)
        _choice("device", self.device, ("auto", "cpu", "cuda"))
        _positive_int("batch_size", self.batch_size, maximum=4096)
        _positive_int("max_seq_length", self.max_seq_length, maximum=512)
        _positive_int("student.layers", self.student.layers, maximum=48)
        _positive_int("student.hidden", self.student.hidden, maximum=8192)
        _positive_int("student.heads", self.student.heads, maximum=128)
        _positive_int("student.ffn", self.student.ffn, maximum=32768)
        if not 0.0 <= _number("student.dropout", self.student.dropout) < 1.0:
            raise ConfigError(f"student.dropout must be in [0, 1); got {self.student.dropout}")
        if self.student.hidden % self.student.heads:
            raise ConfigError(
                f"student.hidden ({self.student.hidden}) must be divisible by student.heads ({self.student.heads})"
            )
        if self.student.init == "checkpoint" and not self.student.checkpoint:
            raise ConfigError("student.init is 'checkpoint' but no student.checkpoint path or id was given")
        _positive_float("lr", self.lr, maximum=1.0)
        _positive_float("teacher_epochs", self.teacher_epochs, maximum=1000.0)
        _positive_float("teacher_lr", self.teacher_lr, maximum=1.0)
        _positive_float("temperature", self.temperature, maximum=100.0)
        _positive_float("epsilon", self.epsilon, maximum=100.0, allow_zero=True)
        for name in ("alpha", "beta", "gamma", "weight_decay", "max_grad_norm"):
            _positive_float(name, getattr(self, name), maximum=1e4, allow_zero=True)
        _fraction("warmup_ratio", self.warmup_ratio)
        _fraction("stage1_fraction", self.stage1_fraction)
        _positive_float("epochs", self.epochs, maximum=1000.0, allow_zero=self.max_steps > 0)
        for name in ("max_steps", "max_train_examples", "max_eval_examples", "eval_every", "save_every", "seed",
                     "num_workers", "snapshot_every"):
            _non_negative_int(name, getattr(self, name))
        _positive_int("log_every", self.log_every, maximum=10**6)
        _positive_int("probe_examples", self.probe_examples, maximum=4096)
        _positive_int("num_negatives", self.num_negatives, maximum=65536)
        if self.negatives == "batch" and self.use_cos_nce and self.alpha > 0 and self.batch_size < 2:
            raise ConfigError("in-batch negatives need batch_size >= 2 (or use negatives: bank)")
        if self.max_train_examples and self.negatives == "bank" and self.num_negatives >= self.max_train_examples:
            raise ConfigError(
                f"num_negatives ({self.num_negatives}) must be smaller than the number of training examples "
                f"({self.max_train_examples})"
            )
        if self.layer_map is not None:
            if len(self.layer_map) != self.student.layers:
                raise ConfigError(
                    f"layer_map has {len(self.layer_map)} entries but the student has {self.student.layers} layers"
                )
            if any((not isinstance(x, int)) or x < 1 for x in self.layer_map):
                raise ConfigError("layer_map entries are 1-based teacher layer numbers (integers >= 1)")
        if not self.use_cos_nce and self.alpha == 0 and self.beta == 0 and self.gamma == 0:
            raise ConfigError("all loss weights are zero: nothing would be trained")
        return self

    # --- (de)serialisation -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DistillConfig":
        data = dict(data or {})
        student = data.pop("student", None) or {}
        if not isinstance(student, dict):
            raise ConfigError("'student' must be a mapping of layers/hidden/heads/ffn/init/checkpoint")
        _reject_unknown(cls, data, "config")
        _reject_unknown(StudentConfig, student, "student")
        return cls(student=StudentConfig(**student), **data)

    def override(self, **changes: Any) -> "DistillConfig":
        """A copy with some fields changed; `student_layers=2` style keys reach into the student."""
        data = self.to_dict()
        for key, value in changes.items():
            if value is None:
                continue
            if key.startswith("student_"):
                data["student"][key[len("student_"):]] = value
            else:
                data[key] = value
        return DistillConfig.from_dict(data)


def _reject_unknown(cls: type, data: dict[str, Any], where: str) -> None:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {where} key(s): {', '.join(unknown)}; known keys: {', '.join(sorted(known))}")


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    if value not in options:
        raise ConfigError(f"{name} must be one of {', '.join(options)}; got {value!r}")


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number; got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ConfigError(f"{name} must be a finite number; got {value!r}")
    return float(value)


def _positive_int(name: str, value: Any, maximum: int) -> None:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value > maximum:
        raise ConfigError(f"{name} must be an integer from 1 to {maximum}; got {value!r}")


def _non_negative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{name} must be an integer >= 0; got {value!r}")


def _positive_float(name: str, value: Any, maximum: float, allow_zero: bool = False) -> None:
    v = _number(name, value)
    low_ok = v >= 0 if allow_zero else v > 0
    if not low_ok or v > maximum:
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be {bound} and at most {maximum:g}; got {value!r}")


def _fraction(name: str, value: Any) -> None:
    v = _number(name, value)
    if not 0.0 <= v <= 1.0:
        raise ConfigError(f"{name} must be between 0 and 1; got {value!r}")


def list_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


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
