"""The run store: every run is a folder, and the app, the CLI and a restart all see the same folders.

    runs/<id>/config.json     what was asked: exactly DistillConfig.to_dict(), so a resume reads it back as is
    runs/<id>/run.json        the run's metadata: kind (distill | finetune | teacher), created, owner, source,
                              experiment and variant, parent, package versions
    runs/<id>/status.json     running | completed | stopped | diverged | failed, the pid, timestamps
    runs/<id>/events.jsonl    one event per line, appended and flushed as the run goes
    runs/<id>/student/        (or model/ for teacher runs) save_pretrained + tokenizer + README.md model card
    runs/<id>/summary.json    final metrics, sizes, timings

JSON files are written atomically (temp file + rename), so a reader never sees half a file. events.jsonl is
append-only; a reader skips a half-written last line instead of failing.

Run folders written before run.json existed kept their metadata inside config.json; `Run.config` and `Run.meta`
split such a file on read, so old runs open, resume and list like new ones.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator

from .errors import LRCError

DEFAULT_ROOT = Path(os.environ.get("LRC_RUNS_DIR", "runs"))
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
TERMINAL = ("completed", "stopped", "diverged", "failed", "interrupted")
META_FILE = "run.json"
# metadata keys that older run folders wrote into config.json
_LEGACY_META = ("kind", "created", "experiment", "variant", "preset", "owner", "resumed", "source", "parent")
_PACKAGES = ("torch", "transformers", "accelerate", "gradio")


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def temp_dir_for(target: Path) -> Path:
    """An empty sibling folder to write a new version of `target` into (`.<name>.tmp`)."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def swap_in(target: Path, tmp: Path) -> None:
    """Replace `target` with the finished `tmp` folder: the old one is renamed aside first, so at every moment
    either the old or the new folder is whole under its own name, and a crash never leaves half of one."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def atomic_swap_dir(target: Path, write: Any) -> None:
    """Write a folder atomically: `write(tmp)` fills a temp folder, which then replaces `target`."""
    tmp = temp_dir_for(Path(target))
    try:
        write(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    swap_in(Path(target), tmp)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default))


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return default


def validate_run_id(run_id: str) -> str:
    """A run id is one path component of safe characters: never `..`, a slash, or an absolute path."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or ".." in run_id:
        raise LRCError(f"invalid run id {run_id!r}: use letters, digits, '.', '_' and '-' only")
    return run_id


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_main_process() -> bool:
    """Under `torchrun`/`accelerate launch` every process runs the same code; only rank 0 writes the run folder.

    Read from the launcher's environment so that this module stays free of torch (the app lists runs without it).
    """
    return os.environ.get("RANK", "0") == "0"


@dataclass
class Run:
    path: Path
    writer: bool = True  # False in the other processes of a multi-process run: they read, never write

    @property
    def id(self) -> str:
        return self.path.name

    # --- files ---
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def model_dir(self) -> Path:
        """Where the run's trained model lives: student/ for distillation, model/ for teacher runs."""
        return self.path / ("model" if self.kind == "teacher" else "student")

    @property
    def meta_path(self) -> Path:
        return self.path / META_FILE

    @property
    def config(self) -> dict[str, Any]:
        """The run's settings, exactly what `DistillConfig.from_dict` accepts (older folders' metadata left out)."""
        data = read_json(self.config_path, {}) or {}
        return {k: v for k, v in data.items() if k not in _LEGACY_META}

    @property
    def meta(self) -> dict[str, Any]:
        """Who made the run, when, how: run.json, over what older folders kept in config.json."""
        legacy = {k: v for k, v in (read_json(self.config_path, {}) or {}).items() if k in _LEGACY_META}
        return {**legacy, **(read_json(self.meta_path, {}) or {})}

    @property
    def kind(self) -> str:
        """distill (the default), finetune (a student on labels alone) or teacher."""
        return self.meta.get("kind") or "distill"

    def update_meta(self, **changes: Any) -> None:
        if not self.writer:
            return
        atomic_write_json(self.meta_path, {**self.meta, **changes})

    @property
    def summary(self) -> dict[str, Any]:
        return read_json(self.summary_path, {}) or {}

    # --- status ---
    def set_status(self, status: str, **extra: Any) -> None:
        if not self.writer:
            return
        data = read_json(self.status_path, {}) or {}
        data.update(extra)
        data.update(status=status, updated=time.time())
        if status == "running":
            data["pid"] = os.getpid()
        atomic_write_json(self.status_path, data)

    @property
    def status_info(self) -> dict[str, Any]:
        return read_json(self.status_path, {}) or {}

    @property
    def status(self) -> str:
        """The run's state; a `running` run whose process is gone is reported as `interrupted`."""
        info = self.status_info
        status = info.get("status", "unknown")
        if status in ("running", "queued") and info.get("pid") and not _pid_alive(info.get("pid")):
            return "interrupted"
        return status

    # --- events ---
    def append_event(self, event: dict[str, Any]) -> None:
        if not self.writer:
            return
        line = json.dumps(event, default=_json_default, allow_nan=True)
        with open(self.events_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()

    def read_events(self, start: int = 0) -> list[dict[str, Any]]:
        """Events from line `start` on; a damaged or half-written line is skipped, the rest still read."""
        return list(self.iter_events(start))

    def iter_events(self, start: int = 0) -> Iterator[dict[str, Any]]:
        try:
            with open(self.events_path, encoding="utf-8", errors="replace") as fh:
                for n, line in enumerate(fh):
                    if n < start or not line.endswith("\n"):
                        continue
                    try:
                        event = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if isinstance(event, dict):
                        yield event
        except FileNotFoundError:
            return

    def size_bytes(self) -> int:
        model = self.model_dir
        return sum(f.stat().st_size for f in model.rglob("*") if f.is_file()) if model.exists() else 0

    def write_summary(self, summary: dict[str, Any]) -> None:
        if not self.writer:
            return
        atomic_write_json(self.summary_path, summary)


class RunStore:
    """A folder of runs. Run ids are validated, so no id from the UI or API can point outside the root."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else DEFAULT_ROOT
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, run_id: str) -> Path:
        validate_run_id(run_id)
        path = (self.root / run_id)
        root = self.root.resolve()
        resolved = path.resolve()
        if resolved.parent != root:
            raise LRCError(f"run id {run_id!r} points outside the run store")
        return path

    def create(self, config: Any, run_id: str | None = None, kind: str = "distill", exist_ok: bool = False,
               replace: bool = False, **meta: Any) -> Run:
        """A new run folder: config.json (the DistillConfig, or its dict) and run.json (kind, time, `meta`).

        An existing folder is refused unless `exist_ok` (the folder is reused, its old events and summary
        dropped so the new run's curves never continue the old ones) or `replace` (the folder is emptied first:
        no stale model or checkpoint either)."""
        config = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        run_id = run_id or self.new_id(config.get("task", "run"), kind)
        path = self.path_for(run_id)
        if not is_main_process():
            return Run(path, writer=False)
        if path.exists() and any(path.iterdir()):
            if replace:
                shutil.rmtree(path)
            elif not exist_ok:
                raise LRCError(f"run folder {path} already exists; choose another --out or delete it")
        path.mkdir(parents=True, exist_ok=True)
        run = Run(path)
        for stale in (run.events_path, run.summary_path, run.status_path):
            stale.unlink(missing_ok=True)
        atomic_write_json(run.config_path, config)
        atomic_write_json(run.meta_path, {"kind": kind, "created": time.time(), "versions": package_versions(),
                                          **meta})
        run.set_status("queued")
        return run

    def new_id(self, task: str, kind: str) -> str:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = f"{'teacher' if kind == 'teacher' else 'lrc'}-{task}-{stamp}"
        candidate, n = base, 1
        while (self.root / candidate).exists():
            n += 1
            candidate = f"{base}-{n}"
        return candidate

    def get(self, run_id: str) -> Run:
        path = self.path_for(run_id)
        if not (path / "config.json").exists():
            raise LRCError(f"no run {run_id!r} in {self.root}")
        return Run(path, writer=is_main_process())

    def list(self) -> list[Run]:
        runs = [Run(p) for p in self.root.iterdir()
                if p.is_dir() and not p.is_symlink() and (p / "config.json").exists() and _RUN_ID.match(p.name)]
        return sorted(runs, key=lambda r: r.meta.get("created", 0), reverse=True)

    def delete(self, run_id: str) -> None:
        path = self.path_for(run_id)
        if path.is_symlink():
            path.unlink()
        elif path.exists():
            shutil.rmtree(path)


def package_versions() -> dict[str, str]:
    """The versions a run was made with (read from the installed packages' metadata: nothing is imported)."""
    found = {}
    for name in _PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def run_from_path(path: str | os.PathLike) -> Run:
    """A Run for an arbitrary `--out` folder (its parent acts as the store)."""
    p = Path(path)
    validate_run_id(p.name)
    return Run(p, writer=is_main_process())
