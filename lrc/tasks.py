"""The GLUE task registry: which columns hold the text, what the labels are, how a task is scored.

Label ids follow the Hugging Face hub's `nyu-mll/glue` order, so a model trained on the local GLUE files
and one trained on the hub copy agree on what label 0 means.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ConfigError


@dataclass(frozen=True)
class LocalFormat:
    """Where a task's fields sit in the classic `glue_data/<Dir>/<split>.tsv` files.

    Fields are header names, or integer positions for headerless files (CoLA). `label` may be -1 for
    "the last column", which is how STS-B and MNLI put it.
    """

    directory: str
    text_a: str | int
    text_b: str | int | None
    label: str | int
    has_header: bool = True
    dev_files: tuple[str, ...] = ("dev",)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    hub_config: str
    text_a: str  # hub column names
    text_b: str | None
    label_names: tuple[str, ...]  # empty for regression
    metrics: tuple[str, ...]
    main_metric: str
    local: LocalFormat
    # how the local files spell each label; values map to label ids
    local_labels: dict[str, int] = field(default_factory=dict)
    hub_dev_splits: tuple[str, ...] = ("validation",)

    @property
    def is_regression(self) -> bool:
        return not self.label_names

    @property
    def num_labels(self) -> int:
        return 1 if self.is_regression else len(self.label_names)

    @property
    def is_pair(self) -> bool:
        return self.text_b is not None

    @property
    def dev_names(self) -> tuple[str, ...]:
        """Names of the dev splits as the library reports them (`dev`, or `dev_matched`/`dev_mismatched`)."""
        return self.local.dev_files


def _binary(zero: str, one: str) -> dict[str, int]:
    return {"0": 0, "1": 1, zero: 0, one: 1}


TASKS: dict[str, TaskSpec] = {
    "cola": TaskSpec(
        "cola", "cola", "sentence", None, ("unacceptable", "acceptable"), ("mcc", "accuracy"), "mcc",
        LocalFormat("CoLA", text_a=3, text_b=None, label=1, has_header=False),
        _binary("unacceptable", "acceptable"),
    ),
    "sst2": TaskSpec(
        "sst2", "sst2", "sentence", None, ("negative", "positive"), ("accuracy",), "accuracy",
        LocalFormat("SST-2", text_a="sentence", text_b=None, label="label"),
        _binary("negative", "positive"),
    ),
    "mrpc": TaskSpec(
        "mrpc", "mrpc", "sentence1", "sentence2", ("not_equivalent", "equivalent"), ("f1", "accuracy"), "f1",
        LocalFormat("MRPC", text_a="#1 String", text_b="#2 String", label="Quality"),
        _binary("not_equivalent", "equivalent"),
    ),
    "stsb": TaskSpec(
        "stsb", "stsb", "sentence1", "sentence2", (), ("pearson", "spearman"), "pearson",
        LocalFormat("STS-B", text_a="sentence1", text_b="sentence2", label=-1),
    ),
    "qqp": TaskSpec(
        "qqp", "qqp", "question1", "question2", ("not_duplicate", "duplicate"), ("f1", "accuracy"), "f1",
        LocalFormat("QQP", text_a="question1", text_b="question2", label="is_duplicate"),
        _binary("not_duplicate", "duplicate"),
    ),
    "mnli": TaskSpec(
        "mnli", "mnli", "premise", "hypothesis", ("entailment", "neutral", "contradiction"),
        ("accuracy",), "accuracy",
        LocalFormat("MNLI", text_a="sentence1", text_b="sentence2", label=-1,
                    dev_files=("dev_matched", "dev_mismatched")),
        {"entailment": 0, "neutral": 1, "contradiction": 2},
        hub_dev_splits=("validation_matched", "validation_mismatched"),
    ),
    "qnli": TaskSpec(
        "qnli", "qnli", "question", "sentence", ("entailment", "not_entailment"), ("accuracy",), "accuracy",
        LocalFormat("QNLI", text_a="question", text_b="sentence", label="label"),
        {"entailment": 0, "not_entailment": 1},
    ),
    "rte": TaskSpec(
        "rte", "rte", "sentence1", "sentence2", ("entailment", "not_entailment"), ("accuracy",), "accuracy",
        LocalFormat("RTE", text_a="sentence1", text_b="sentence2", label="label"),
        {"entailment": 0, "not_entailment": 1},
    ),
    "wnli": TaskSpec(
        "wnli", "wnli", "sentence1", "sentence2", ("not_entailment", "entailment"), ("accuracy",), "accuracy",
        LocalFormat("WNLI", text_a="sentence1", text_b="sentence2", label="label"),
        _binary("not_entailment", "entailment"),
    ),
}

_ALIASES = {
    "sst-2": "sst2", "sst": "sst2", "sts-b": "stsb", "sts": "stsb", "mnli-m": "mnli", "mnli-mm": "mnli",
    "qnliv2": "qnli",
}


def get_task(name: str) -> TaskSpec:
    """Look a task up by name, forgiving case and the GLUE folder spelling (`SST-2`, `STS-B`)."""
    key = (name or "").strip().lower()
    key = _ALIASES.get(key, key)
    if key not in TASKS:
        raise ConfigError(
            f"unknown task {name!r}; choose one of: {', '.join(TASKS)} (or 'custom' with --train-file)"
        )
    return TASKS[key]


def custom_task(label_names: tuple[str, ...], pair: bool) -> TaskSpec:
    """A task spec for a user's own file: accuracy/F1 for classification, Pearson/Spearman for regression."""
    if label_names:
        metrics: tuple[str, ...] = ("accuracy", "f1") if len(label_names) == 2 else ("accuracy", "macro_f1")
        main = "accuracy"
    else:
        metrics, main = ("pearson", "spearman"), "pearson"
    return TaskSpec(
        "custom", "custom", "text_a", "text_b" if pair else None, tuple(label_names), metrics, main,
        LocalFormat("", "text_a", "text_b" if pair else None, "label"),
        {name: i for i, name in enumerate(label_names)},
    )
