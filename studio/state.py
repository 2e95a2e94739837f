"""What the app shares across requests: the run store, the data folder, the job queue and the model cache.

Nothing here loads a model or imports torch: the app must start fast. Settings come from the command line
(`python app.py --runs-dir ... --data-dir ...`) or the environment (`LRC_RUNS_DIR`, `GLUE_DIR`, `HF_TOKEN`), and
the operator's safety switches from the environment only (`LRC_ALLOW_LOCAL_PATHS`, `LRC_ALLOW_FOREIGN_STOP`,
`LRC_MAX_UPLOAD_MB`, `LRC_LAYERS_CACHE_MB`; see app/guard.py): a request can never turn them on.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lrc.runs import RunStore

from .guard import env_flag, env_whole_number
from .jobs import JobManager


@dataclass
class AppSettings:
    runs_dir: str = "runs"
    data_dir: str | None = None
    preset: str | None = None  # the preset the Distill form starts from; None = quick-cpu on CPU, lrc-paper on GPU
    teacher: str | None = None  # the teacher the Distill form starts with; None = the bundled default
    hub_token: str | None = field(default=None, repr=False)  # the operator's; never written to a run or shown
    max_queue: int = 20  # waiting runs at most; more and Distill says the queue is full
    disagreement_limit: int = 500  # most dev examples the disagreements view scores at once
    allow_local_paths: bool = False  # a teacher may be any local folder (off: bundled, store runs, hub ids only)
    allow_foreign_stop: bool = False  # any session may stop or delete any run (off: only the run's own session)
    max_upload_mb: int = 20  # the largest file the server accepts on its upload route
    # MB of layer vectors the Layers tab keeps per run, all sample sizes together (lrc.analysis.DEFAULT_CACHE_MB)
    layers_cache_mb: int = 1024

    @classmethod
    def from_env(cls, **overrides: Any) -> "AppSettings":
        values = {
            "runs_dir": os.environ.get("LRC_RUNS_DIR") or "runs",
            "data_dir": os.environ.get("GLUE_DIR") or None,
            "preset": os.environ.get("LRC_PRESET") or None,
            "teacher": os.environ.get("LRC_TEACHER") or None,
            "hub_token": os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None,
            "allow_local_paths": env_flag("LRC_ALLOW_LOCAL_PATHS"),
            "allow_foreign_stop": env_flag("LRC_ALLOW_FOREIGN_STOP"),
            "max_upload_mb": env_whole_number("LRC_MAX_UPLOAD_MB", cls.max_upload_mb),
            "layers_cache_mb": env_whole_number("LRC_LAYERS_CACHE_MB", cls.layers_cache_mb, minimum=0),
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
