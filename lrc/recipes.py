"""How a default teacher is fine-tuned: one recipe table, and the sequence length a task's data needs.

A teacher that does not know its task makes every comparison downstream meaningless, so the default teacher is
trained on all of the task's rows with a recipe measured for it (docs/RESULTS.md, "Teachers"). Recipes are kept
per task *family* (one sentence, a pair of sentences, a pair scored on a scale), with a row of its own only where
a task was measured to need one. A task that has no row (MNLI, QQP, QNLI, WNLI, a user's own file) gets its
family's recipe, and the pair family was tuned on MRPC and STS-B only: RTE is held out, to show that the family
recipe works on a task it was not tuned on.

Every value can be overridden with the `teacher_*` knobs; the chosen recipe is written into the teacher run's
config.json, so the run says exactly how it was made.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .tasks import TaskSpec

TEACHER_SEED = 0  # one default teacher per task, whatever seed the student runs with
CPU_LENGTH_CAP = 128  # longer inputs cost more on a CPU than the last percent of rows is worth
GPU_LENGTH_CAP = 512
LENGTH_PERCENTILE = 99


@dataclass(frozen=True)
class Recipe:
    epochs: float
    lr: float
    batch_size: int
    warmup_ratio: float
    why: str


FAMILY_RECIPES: dict[str, Recipe] = {
    "single": Recipe(3.0, 5e-5, 32, 0.1, "placeholder: measured values follow"),
    "pair": Recipe(4.0, 5e-5, 32, 0.1, "placeholder: measured values follow"),
    "regression": Recipe(4.0, 5e-5, 32, 0.1, "placeholder: measured values follow"),
}
TASK_RECIPES: dict[str, Recipe] = {}
HELD_OUT = ("rte",)  # tasks no recipe was tuned on: the pair family's defaults are judged on them

# the classifier head's pooling per backbone, measured (docs/RESULTS.md); any other backbone: BERT's [CLS] pooler
POOLING: dict[str, str] = {}


def family(task: TaskSpec) -> str:
    if task.is_regression:
        return "regression"
    return "pair" if task.is_pair else "single"


def recipe_for(task: TaskSpec) -> Recipe:
    """The task's own recipe where one was measured, else its family's."""
    return TASK_RECIPES.get(task.name) or FAMILY_RECIPES[family(task)]


def pooling_for(backbone: str) -> str:
    return POOLING.get(backbone, "cls")


def length_from_data(lengths: Sequence[int], cap: int) -> int:
    """The 99th percentile of the rows' token counts, rounded up to a multiple of 8, at most `cap`: long enough for
    nearly every row, without padding every batch to the longest outlier."""
    if not lengths:
        return min(cap, 128)
    ordered = sorted(lengths)
    index = min(len(ordered) - 1, max(0, math.ceil(LENGTH_PERCENTILE / 100 * len(ordered)) - 1))
    return max(8, min(cap, 8 * math.ceil(ordered[index] / 8)))
