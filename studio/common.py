"""Small display helpers the tabs share: times, ordinals, a task's main metric, the bundled teacher's name."""

from __future__ import annotations

import os

from . import predicting

BUNDLED = "bundled"


def fmt_time(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def metric_for(task: str | None) -> str:
    spec = predicting.task_spec(task)
    return spec.main_metric if spec else "accuracy"


def gpu_likely() -> bool:
    """A cheap guess (no torch import) used only to pick the form's starting preset."""
    return bool(os.environ.get("SPACES_ZERO_GPU")) or os.path.exists("/dev/nvidia0")
