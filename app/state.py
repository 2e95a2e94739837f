"""What the app shares across requests: the run store, the data folder, the job queue and the model cache.

Nothing here loads a model or imports torch: the app must start fast. Settings come from the command line
(`python app.py --runs-dir ... --data-dir ...`) or the environment (`LRC_RUNS_DIR`, `GLUE_DIR`, `HF_TOKEN`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrc.runs import RunStore

from .jobs import JobManager


@dataclass
class AppSettings:
    runs_dir: str = "runs"
    data_dir: str | None = None
    preset: str | None = None  # the preset the Distill form starts from; None = quick-cpu on CPU, lrc-paper on GPU
    teacher: str | None = None  # the teacher the Distill form starts with; None = the bundled default
    hub_token: str | None = None
    max_queue: int = 20  # waiting runs at most; more and Distill says the queue is full
    disagreement_limit: int = 500  # most dev examples the disagreements view scores at once

    @classmethod
    def from_env(cls, **overrides: Any) -> "AppSettings":
        values = {
            "runs_dir": os.environ.get("LRC_RUNS_DIR") or "runs",
            "data_dir": os.environ.get("GLUE_DIR") or None,
            "preset": os.environ.get("LRC_PRESET") or None,
            "teacher": os.environ.get("LRC_TEACHER") or None,
            "hub_token": os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass
class AppContext:
    settings: AppSettings
    store: RunStore
    jobs: JobManager
    cache: Any = None  # lrc.predict.ModelCache, made on the first prediction (it imports torch)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def create(cls, settings: AppSettings | None = None, jobs: JobManager | None = None) -> "AppContext":
        settings = settings or AppSettings.from_env()
        if settings.data_dir:
            settings.data_dir = str(Path(settings.data_dir).expanduser())
        store = RunStore(settings.runs_dir)
        return cls(settings=settings, store=store, jobs=jobs or JobManager(store, max_queue=settings.max_queue))

    def model_cache(self):
        if self.cache is None:
            from lrc.predict import ModelCache

            self.cache = ModelCache(capacity=4)
        return self.cache
