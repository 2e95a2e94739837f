"""LRC Studio's Gradio layout and callbacks.

`Studio` holds the callbacks as plain methods (tests call them directly, without a browser); `build_app` lays
the tabs out and wires the events. Named API endpoints (`distill`, `watch`, `stop`, `resume`, `runs`, `compare`,
`predict`, `disagreements`, `download`, `delete`, `push`) make the same functions callable with `gradio_client`.

Every run id from a request goes through `guard.open_run` (one folder inside the store, no links out), every
teacher through `guard.check_teacher` (no local paths unless the operator allows them) and the teacher's config
(`preflight`), and Stop/Delete through `guard.check_owner` (only the browser or session that started the run).

Training never runs in a request: `distill` hands the config to `app.jobs.JobManager` and then only reads the
run folder as events land (`watch` does the same for any run, so a refresh or a second tab re-attaches).
"""

from __future__ import annotations

import os
import time
from typing import Any, Iterator

import gradio as gr

from lrc.config import DistillConfig, list_presets, load_preset
from lrc.errors import LRCError
from lrc.runs import TERMINAL, RunStore, validate_run_id
from lrc.tasks import TASKS

from . import figures, guard, predicting, preflight, runs_view
from .layers import build_layers_tab
from .state import AppContext

POLL_S = 0.5  # how often a stream looks for new events
FIRST_POLL_S = 0.1  # until the first loss point has arrived: that moment is what a user waits for
HEARTBEAT_S = 3.0  # refresh the status line (ETA, queue place) at least this often, even without new events
BUNDLED = "bundled"
TERMINAL_STATES = set(TERMINAL)

# The Distill form, in the order the `distill` endpoint takes its parameters.
FORM_FIELDS = (
    "task", "teacher", "preset", "student_layers", "student_hidden", "student_heads", "student_ffn", "student_init",
    "stage1_steps", "stage2_steps", "epochs", "stage1_fraction", "batch_size", "lr", "temperature", "alpha", "beta",
    "gamma", "use_cos_nce", "negatives", "num_negatives", "perturb", "epsilon", "max_train_examples",
    "max_eval_examples", "max_seq_length", "seed", "teacher_epochs", "log_every", "eval_every", "run_name",
)
# the form fields a preset fills in (everything but what to distil and the run's name)
PRESET_FIELDS = FORM_FIELDS[3:-1]
INT_FIELDS = {"student_layers", "student_hidden", "student_heads", "student_ffn", "stage1_steps", "stage2_steps",
              "batch_size", "num_negatives", "max_train_examples", "max_eval_examples", "max_seq_length", "seed",
              "log_every", "eval_every"}

CSS = """
#lrc-header h1 {margin-bottom: 0}
#lrc-status {min-height: 4.5em}
#lrc-progress {min-height: 4.5em}
.lrc-small {font-size: 0.9em; color: var(--body-text-color-subdued)}
"""


# what `settings` may set through the API: the form's knobs and the rest of DistillConfig's training fields
SETTABLE = set(PRESET_FIELDS) | {
    "two_stage", "representation", "distance", "projection", "layer_map", "teacher_lr", "max_steps",
    "weight_decay", "warmup_ratio", "max_grad_norm", "save_every", "mixed_precision", "snapshot_every",
    "probe_examples", "length_grouping",
}
BOOL_FIELDS = {"use_cos_nce", "perturb", "two_stage", "length_grouping"}
FLOAT_FIELDS = {"epochs", "stage1_fraction", "lr", "temperature", "alpha", "beta", "gamma", "epsilon",
                "teacher_epochs", "teacher_lr", "weight_decay", "warmup_ratio", "max_grad_norm"}


def _whole(name: str, value: Any) -> int:
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise LRCError(f"{name.replace('_', ' ')} must be a whole number; got {value!r}") from None
    if isinstance(value, bool) or not as_float.is_integer():
        raise LRCError(f"{name.replace('_', ' ')} must be a whole number; got {value!r}")
    return int(as_float)


def _number(name: str, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise LRCError(f"{name.replace('_', ' ')} must be a number; got {value!r}") from None


def _check_types(settings: Any, run_name: Any) -> None:
    """The API takes JSON: refuse wrong shapes with a message before they reach the config (a string where a
    switch belongs would otherwise read as true)."""
    if settings is not None and not isinstance(settings, dict):
        raise LRCError(f"settings must be a JSON object of knob: value, e.g. {{\"lr\": 1e-4}}; got {settings!r:.80}")
    for name in BOOL_FIELDS & set(settings or {}):
        if not isinstance(settings[name], bool) and settings[name] is not None:
            raise LRCError(f"{name} must be true or false; got {settings[name]!r}")
    if run_name is not None and not isinstance(run_name, str):
        raise LRCError(f"run_name must be text (letters, digits, '.', '_' and '-'); got {run_name!r}")


def gpu_likely() -> bool:
    """A cheap guess (no torch import) used only to pick the form's starting preset."""
    return bool(os.environ.get("SPACES_ZERO_GPU")) or os.path.exists("/dev/nvidia0")


def form_values(preset: str | None) -> dict[str, Any]:
    """The form's values for a preset: the preset's keys over DistillConfig's defaults (the paper's)."""
    cfg = DistillConfig.from_dict(load_preset(preset)) if preset else DistillConfig()
    s = cfg.student
    return {
        "student_layers": s.layers, "student_hidden": s.hidden, "student_heads": s.heads, "student_ffn": s.ffn,
        "student_init": s.init if s.init != "checkpoint" else "auto",
        "stage1_steps": 0, "stage2_steps": 0, "epochs": cfg.epochs, "stage1_fraction": cfg.stage1_fraction,
        "batch_size": cfg.batch_size, "lr": cfg.lr, "temperature": cfg.temperature, "alpha": cfg.alpha,
        "beta": cfg.beta, "gamma": cfg.gamma, "use_cos_nce": cfg.use_cos_nce, "negatives": cfg.negatives,
        "num_negatives": cfg.num_negatives, "perturb": cfg.perturb, "epsilon": cfg.epsilon,
        "max_train_examples": cfg.max_train_examples, "max_eval_examples": cfg.max_eval_examples,
        "max_seq_length": cfg.max_seq_length, "seed": cfg.seed, "teacher_epochs": cfg.teacher_epochs,
        "log_every": cfg.log_every, "eval_every": cfg.eval_every, "task": cfg.task,
    }


def _fmt_time(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "-"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def metric_for(task: str | None) -> str:
    spec = predicting.task_spec(task)
    return spec.main_metric if spec else "accuracy"


class Studio:
    """The app's callbacks. Each is a plain method: the UI, the API and the tests all call the same code."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    @property
    def store(self) -> RunStore:
        return self.ctx.store

    @property
    def default_preset(self) -> str:
        return self.ctx.settings.preset or ("lrc-paper" if gpu_likely() else "quick-cpu")

    # ================================================================================================ Distill
    def teacher_choices(self, task: str | None = None) -> list[tuple[str, str]]:
        """The bundled default plus every finished teacher run of the store (for this task when one is given)."""
        choices = [("bundled MiniLM, fine-tuned on the task first (cached)", BUNDLED)]
        for run in self.store.list():
            cfg = run.config
            if cfg.get("kind") != "teacher" or run.status != "completed" or not predicting.has_model(run):
                continue
            if task and cfg.get("task") != task:
                continue
            score = run.summary.get("score")
            label = f"teacher run {run.id}" + (f" ({score:.3f} {run.summary.get('main_metric')})"
                                               if isinstance(score, float) else "")
            choices.append((label, str(run.path)))
        return choices

    def on_task_change(self, task: str, teacher: str):
        choices = self.teacher_choices(task)
        values = {v for _l, v in choices}
        keep = teacher if teacher and (teacher in values or not teacher.startswith(str(self.store.root))) else BUNDLED
        return gr.update(choices=choices, value=keep)

    def check_preset(self, preset: str | None) -> str | None:
        """Only the bundled presets, or the one the app was started with: a request never names a server file."""
        if preset is not None and not isinstance(preset, str):
            raise LRCError(f"preset must be a preset's name; got {preset!r}")
        preset = (preset or "").strip() or None
        allowed = set(list_presets()) | {self.default_preset}
        if preset is not None and preset not in allowed:
            raise LRCError(f"unknown preset {preset!r}; choose one of: {', '.join(sorted(allowed))}")
        return preset

    def apply_preset(self, preset: str) -> list[Any]:
        try:
            values = form_values(self.check_preset(preset))
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        return [values[name] for name in PRESET_FIELDS]

    def build_config(self, task: str, preset: str | None, teacher: str | None, settings: dict[str, Any],
                     run_name: str | None = None) -> tuple[DistillConfig, str | None]:
        """A validated DistillConfig: the preset, then `settings` over it (DistillConfig fields, `student_*`, or
        `stage1_steps`/`stage2_steps`), on the app's data folder; plus the run id asked for, if any."""
        preset = self.check_preset(preset)
        _check_types(settings, run_name)
        settings = dict(settings or {})
        unknown = sorted(str(k) for k in settings if k not in SETTABLE)
        if unknown:
            raise LRCError(f"unknown or not settable from the app: {', '.join(unknown)}; "
                           f"settable: {', '.join(sorted(SETTABLE))}")
        if not isinstance(task, str) or task not in TASKS:
            raise LRCError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
        base = DistillConfig.from_dict(load_preset(preset)) if preset else DistillConfig()
        settings_ = self.ctx.settings
        teacher = guard.check_teacher(teacher, self.store, settings_.allow_local_paths, (settings_.teacher,))
        changes: dict[str, Any] = {"task": task, "teacher": teacher, "data_dir": settings_.data_dir}
        s1, s2 = settings.pop("stage1_steps", 0) or 0, settings.pop("stage2_steps", 0) or 0
        for name, value in settings.items():
            if value is None:
                continue
            if name in INT_FIELDS or name in ("max_steps", "save_every", "snapshot_every", "probe_examples"):
                value = _whole(name, value)
            elif name in FLOAT_FIELDS:
                value = _number(name, value)
            changes[name] = value
        s1, s2 = _whole("stage1_steps", s1), _whole("stage2_steps", s2)
        if s1 < 0 or s2 < 0:
            raise LRCError("stage-1 and stage-2 steps must be >= 0 (0 and 0: use epochs and the stage-1 share)")
        if s1 or s2:
            changes.update(max_steps=s1 + s2, stage1_fraction=s1 / (s1 + s2), two_stage=s1 > 0)
        cfg = base.override(**changes)
        if not cfg.use_cos_nce:
            cfg = cfg.override(alpha=0.0)
        cfg.validate()
        preflight.check_against_teacher(cfg)
        run_id = (run_name or "").strip() or None
        if run_id:
            validate_run_id(run_id)
            if (self.store.root / run_id).exists():
                raise LRCError(f"a run named {run_id!r} already exists; pick another name or leave it empty")
        return cfg, run_id

    def config_from_form(self, values: dict[str, Any]) -> tuple[DistillConfig, str | None]:
        """The Distill form as a config: every knob on the form is explicit (a preset change refills them)."""
        settings = {name: values.get(name) for name in PRESET_FIELDS}
        return self.build_config(values["task"], values.get("preset"), values.get("teacher"), settings,
                                 values.get("run_name"))

    def _submit(self, cfg: DistillConfig, run_id: str | None, preset: str | None, request,
                owner_key: str = "") -> str:
        owner = guard.session_of(request, owner_key)
        return self.ctx.jobs.submit(cfg, owner=owner, run_id=run_id, preset=self.check_preset(preset)).id

    def distill_form(self, task: str, teacher: str, preset: str, student_layers: int, student_hidden: int,
                     student_heads: int, student_ffn: int, student_init: str, stage1_steps: int, stage2_steps: int,
                     epochs: float, stage1_fraction: float, batch_size: int, lr: float, temperature: float,
                     alpha: float, beta: float, gamma: float, use_cos_nce: bool, negatives: str, num_negatives: int,
                     perturb: bool, epsilon: float, max_train_examples: int, max_eval_examples: int,
                     max_seq_length: int, seed: int, teacher_epochs: float, log_every: int, eval_every: int,
                     run_name: str, owner_key: str = "", request: gr.Request = None,
                     progress=gr.Progress()) -> Iterator[tuple]:
        """The Distill button: queue a run from the form and stream (run id, status, loss figure) until it ends."""
        values = {k: v for k, v in locals().items() if k in FORM_FIELDS}
        try:
            cfg, run_id = self.config_from_form(values)
            run_id = self._submit(cfg, run_id, preset, request, owner_key)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        yield from self.stream(run_id, progress)

    def distill(self, task: str = "sst2", preset: str | None = None, teacher: str | None = None,
                settings: dict[str, Any] | None = None, run_name: str | None = None,
                request: gr.Request = None) -> Iterator[dict[str, Any]]:
        """API: queue a run and stream its state (a dict per update) until it ends.

        `preset`: quick-cpu | lrc-paper | kd-baseline (default: the app's starting preset). `teacher`: a teacher
        run folder, model folder or hub id (default: the app's, else the bundled MiniLM fine-tuned first).
        `settings`: any knob over the preset, by config name, e.g. {"max_train_examples": 500, "perturb": False,
        "student_layers": 4, "stage1_steps": 80, "stage2_steps": 20}.
        """
        try:
            cfg, run_id = self.build_config(task, preset or self.default_preset,
                                            teacher if teacher is not None else self.ctx.settings.teacher,
                                            settings, run_name)
            run_id = self._submit(cfg, run_id, preset or self.default_preset, request)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        yield from self.stream_state(run_id)

    def watch(self, run_id: str, progress=gr.Progress()) -> Iterator[tuple]:
        """Attach to any run of the store and stream it until it ends (returns at once for a finished run)."""
        if run_id is None or (isinstance(run_id, str) and not run_id.strip()):
            yield "", "No run is active. Set up a run on the left and press **Distill**.", figures.loss_figure(None)
            return
        try:
            run = guard.open_run(self.store, run_id)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        yield from self.stream(run.id, progress)

    def watch_state(self, run_id: str) -> Iterator[dict[str, Any]]:
        """API: stream the state of any run (running, waiting or finished) until it ends."""
        try:
            run = guard.open_run(self.store, run_id)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        yield from self.stream_state(run.id)

    def follow(self, run_id: str, progress=None) -> Iterator[tuple[figures.Curves, dict[str, Any], str, bool, bool]]:
        """Read a run's events as they land: yields (curves, queue info, status, new events?, done?) whenever
        there is something to show (new events, or a heartbeat for the ETA and queue place)."""
        run = self.store.get(run_id)
        curves = figures.Curves()
        last_beat, first = 0.0, True
        while True:
            status = run.status  # read before the events: a terminal status means all events are written
            new = run.read_events(curves.count)
            curves.add(new)
            info = self.ctx.jobs.describe(run_id)
            done = status in TERMINAL_STATES and info.get("state") in ("done", "unknown")
            self._progress(progress, curves, info, status)
            now = time.monotonic()
            if new or first or done or now - last_beat >= HEARTBEAT_S:
                yield curves, info, status, bool(new or first or done), done
                last_beat, first = now, False
            if done:
                return
            time.sleep(POLL_S if curves.last_step is not None else FIRST_POLL_S)

    def stream(self, run_id: str, progress=None) -> Iterator[tuple]:
        metric = metric_for(self.store.get(run_id).config.get("task"))
        for curves, info, status, changed, _done in self.follow(run_id, progress):
            text = self.status_markdown(run_id, curves, info, status)
            yield run_id, text, figures.loss_figure(curves, metric, title=run_id) if changed else gr.skip()

    def stream_state(self, run_id: str) -> Iterator[dict[str, Any]]:
        for curves, info, status, _changed, done in self.follow(run_id):
            yield self.state(run_id, curves, info, status, done)

    def state(self, run_id: str, curves: figures.Curves, info: dict[str, Any], status: str,
              done: bool) -> dict[str, Any]:
        """A run's progress as plain JSON: what the API streams."""
        step = curves.last_step or {}
        total = curves.total_steps
        elapsed = step.get("elapsed")
        eta = elapsed / step["step"] * (total - step["step"]) if elapsed and step.get("step") and total else None
        waiting = info.get("state") == "waiting"
        out: dict[str, Any] = {
            "run_id": run_id,
            "status": "waiting" if waiting and not done else status,
            "queue_position": info.get("position") if waiting else None,
            "runs_ahead": info.get("ahead") if waiting else None,
            "phase": "distill" if curves.start else ("teacher" if curves.teacher_step else None),
            "step": curves.step, "total_steps": total, "stage": step.get("stage"),
            "samples_per_s": step.get("samples_per_s"), "elapsed_s": elapsed,
            "eta_s": None if done else eta,
            "losses": {k: step[k] for k, _n in figures.TERMS if isinstance(step.get(k), (int, float))},
            "dev": curves.latest_metrics(),
            "message": self.status_markdown(run_id, curves, info, status),
            "done": done,
        }
        if done:
            out["summary"] = self.store.get(run_id).summary
            out["curves"] = {k: [list(p) for p in v] for k, v in curves.series.items()}
            out["evals"] = curves.evals
            out["stage2_at"] = curves.stage2_at
        return out

    @staticmethod
    def _progress(progress, curves: figures.Curves, info: dict[str, Any], status: str) -> None:
        if progress is None:
            return
        if info.get("state") == "waiting":
            progress(0.0, desc=f"waiting in the queue ({_ordinal(info['position'])} in line)")
        elif curves.last_step and curves.total_steps:
            progress((curves.step, curves.total_steps), desc="distilling", unit="steps")
        elif curves.teacher_step and not curves.teacher_ready:
            t = curves.teacher_step
            progress((int(t["step"]), int(t.get("total_steps") or 0) or None), desc="fine-tuning the teacher",
                     unit="steps")
        elif status not in TERMINAL_STATES:
            progress(None, desc="loading data and models")

    def status_markdown(self, run_id: str, curves: figures.Curves, info: dict[str, Any], status: str) -> str:
        run = self.store.get(run_id)
        cfg = run.config
        head = f"**{run_id}** · {cfg.get('task')} · {runs_view.method_of(cfg)} · student {runs_view.shape_of(cfg)}"
        lines = [head]
        state = info.get("state")
        if state == "waiting":
            ahead = info["ahead"]
            lines.append(f"**Waiting in the queue: {_ordinal(info['position'])} in line** "
                         f"({ahead} run{'s' if ahead != 1 else ''} ahead of it). It starts by itself; you can leave "
                         f"this page and come back.")
            return "\n\n".join(lines)
        loading = status not in TERMINAL_STATES and state == "running"
        if curves.teacher_step and not curves.teacher_ready and status not in TERMINAL_STATES:
            loading = False
            t = curves.teacher_step
            lines.append(f"Fine-tuning the default teacher first: step {t['step']}/{t.get('total_steps')} "
                         f"(cached for the next run)")
        elif curves.teacher_ready and not curves.start and status not in TERMINAL_STATES:
            loading = False
            lines.append("teacher ready" + (" (cached)" if curves.teacher_ready.get("cached") else "") +
                         "; loading the student")
        step = curves.last_step
        if step:
            total = curves.total_steps or step.get("total_steps") or 0
            speed = step.get("samples_per_s")
            elapsed = step.get("elapsed")
            eta = elapsed / step["step"] * (total - step["step"]) if elapsed and step["step"] and total else None
            parts = [f"step **{step['step']}/{total}**", f"stage {step.get('stage')}"]
            if speed:
                parts.append(f"{speed:.0f} samples/s")
            parts.append(f"elapsed {_fmt_time(elapsed)}")
            if status not in TERMINAL_STATES:
                parts.append(f"ETA {_fmt_time(eta)}")
            if curves.start:
                parts.append(f"on {curves.start.get('device')}")
            lines.append(" · ".join(parts))
        elif curves.start and status not in TERMINAL_STATES:
            lines.append(f"started on {curves.start.get('device')}: {curves.total_steps} steps "
                         f"({curves.start.get('stage1_steps')} in stage 1); the first loss point lands after step 1")
        elif loading:
            lines.append("loading data and models…")
        metrics = curves.latest_metrics()
        if metrics:
            lines.append("dev: " + "; ".join(
                f"{split} " + ", ".join(f"{k} {v:.4f}" for k, v in m.items() if isinstance(v, (int, float)))
                for split, m in metrics.items()))
        if info.get("stopping") and status not in TERMINAL_STATES:
            lines.append("Stop requested: ending at the next step and saving the student")
        if status in TERMINAL_STATES:
            summary = run.summary
            message = (curves.end or {}).get("message") or run.status_info.get("message") or ""
            if status == "completed":
                text = f"**Completed** in {_fmt_time(summary.get('seconds'))}"
                if isinstance(summary.get("score"), float):
                    text += f": dev {summary.get('main_metric')} **{summary['score']:.4f}**"
                if isinstance(summary.get("teacher_score"), float):
                    text += f" (teacher {summary['teacher_score']:.4f})"
                if summary.get("student_params"):
                    text += f", student {summary['student_params'] / 1e6:.1f} M parameters"
                    if summary.get("teacher_params"):
                        text += f" vs teacher {summary['teacher_params'] / 1e6:.1f} M"
                lines.append(text + ". Try it in **Predict**.")
            elif status == "stopped":
                saved = predicting.has_model(run)
                lines.append(f"**Stopped**{': ' + message if message else ''}"
                             + (" — the student learned so far is saved." if saved else ""))
            else:
                lines.append(f"**{status.capitalize()}**{': ' + message if message else ''}")
        return "\n\n".join(lines)

    def stop(self, run_id: str, owner_key: str = "", request: gr.Request = None) -> str:
        """Stop a run at its next step (the student is saved); a run still waiting is taken off the queue.
        Only the session that started the run may stop it (unless the operator allows it)."""
        run_id = (run_id or "").strip() if isinstance(run_id, str) else run_id
        if not run_id:
            return "No run to stop."
        try:
            run = guard.open_run(self.store, run_id)
            guard.check_owner(run, request, self.ctx.settings.allow_foreign_stop, "stop", owner_key)
            what = self.ctx.jobs.stop(run.id)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        return {
            "cancelled": f"{run_id} was taken off the queue before it started.",
            "stopping": f"Stopping {run_id} at the next step; the student learned so far is saved.",
            "finished": f"{run_id} is not running.",
            "unknown": f"no run {run_id}.",
        }[what]

    def resume(self, run_id: str, request: gr.Request = None, progress=gr.Progress()) -> Iterator[tuple]:
        """Continue a stopped or interrupted run from its checkpoint, then stream it like a new one.

        Open to every session (unlike Stop and Delete): resuming destroys nothing, and after an app restart the
        session that started the run is gone."""
        run_id = (run_id or "").strip() if isinstance(run_id, str) else run_id
        if not run_id:
            raise gr.Error("No run to resume: pick one under 'Watch another run' first.")
        try:
            run = guard.open_run(self.store, run_id)
            self.ctx.jobs.resume(run.id)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        yield from self.watch(run.id, progress)

    def stop_api(self, run_id: str, request: gr.Request = None) -> str:
        """API: stop a run started by this API session (the page's browser key is not part of the API)."""
        return self.stop(run_id, "", request)

    def delete_api(self, run_id: str, request: gr.Request = None) -> str:
        """API: delete a finished run started by this API session."""
        return self.delete(run_id, "", request)

    def active_runs(self) -> list[str]:
        """Runs to re-attach to: this app's queue (running first), then any run the store reports running."""
        ids = [job.run_id for job in self.ctx.jobs.active()]
        for run in self.store.list():
            if run.id not in ids and run.status == "running" and run.config.get("kind") != "teacher":
                ids.append(run.id)
        return ids

    def on_load(self) -> tuple:
        """A new page (or a refresh) re-attaches to the running run, if any."""
        active = self.active_runs()
        recent = [r.id for r in self.store.list() if r.config.get("kind") != "teacher"][:30]
        choices = active + [r for r in recent if r not in active]
        current = active[0] if active else ""
        return current, gr.update(choices=choices, value=current or None)

    # =================================================================================================== Runs
    def runs(self) -> list[dict[str, Any]]:
        """Every run of the store, newest first: task, kind, status, method, metrics, size, speed, config."""
        return runs_view.list_records(self.store)

    def runs_table(self):
        records = self.runs()
        ids = [r["run"] for r in records]
        done = [r["run"] for r in records if r["has_model"]]
        table = gr.update(value={"headers": runs_view.TABLE_COLUMNS, "data": runs_view.table_rows(records)})
        return table, gr.update(choices=ids), gr.update(choices=done)

    # ---- experiments (python -m lrc experiment): one table and one plot ---------------------------------------
    def experiment_choices(self):
        from lrc.experiment import list_experiments

        return gr.update(choices=list_experiments(self.store))

    def experiment_api(self, name: str) -> dict[str, Any]:
        """API: an experiment's rows (variant, mean, std, seeds, share of the teacher), teacher and robustness."""
        from lrc.experiment import experiment_rows, load_experiment

        try:
            result = load_experiment(self.store, name)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        return {"name": name, "task": result.get("task"), "teacher_score": result.get("teacher_score"),
                "rows": experiment_rows(result), "robustness": result.get("robustness"),
                "finished": bool(result.get("finished"))}

    def experiment_view(self, name: str):
        """The Runs tab's experiment section: table, plot, notes, and its seed-0 runs picked for Compare."""
        if not name:
            return (gr.update(value={"headers": runs_view.EXPERIMENT_COLUMNS, "data": []}),
                    figures.experiment_figure([], None, "score"), "", gr.skip())
        data = self.experiment_api(name)
        metric = metric_for(data["task"])
        table = gr.update(value={"headers": runs_view.EXPERIMENT_COLUMNS,
                                 "data": runs_view.experiment_rows(data["rows"], data["teacher_score"])})
        fig = figures.experiment_figure(data["rows"], data["teacher_score"], metric,
                                        title=f"{name}: dev {metric}, mean ± sd over seeds")
        note = runs_view.experiment_note(data)
        first_seed = [f"{name}-{r['variant']}-s0" for r in data["rows"]]
        existing = [rid for rid in first_seed if (self.store.root / rid / "config.json").exists()]
        return table, fig, note, gr.update(value=existing)

    def compare(self, run_ids: list[str], term: str = "loss"):
        """Overlay the picked runs' loss curves (a term: loss, cos_nce, soft, hard) and line their metrics up."""
        run_ids = [run_ids] if isinstance(run_ids, str) else [r for r in (run_ids or []) if r]
        records, series = [], []
        for rid in run_ids:
            try:
                run = guard.open_run(self.store, rid)
            except LRCError as exc:
                raise gr.Error(str(exc)) from None
            records.append(runs_view.run_record(run))
            series.append((rid, figures.curves_of(run.iter_events()), metric_for(run.config.get("task"))))
        fig = figures.compare_figure(series, term or "loss")
        metrics = {m for _r, _c, m in series}
        score_fig = figures.score_figure(records, metrics.pop() if len(metrics) == 1 else "score")
        headers, rows = runs_view.compare_rows(records)
        return fig, score_fig, {"headers": headers, "data": rows}

    def download(self, run_id: str) -> str:
        """The run's student (or teacher model) folder as a zip file."""
        try:
            return runs_view.zip_model(guard.open_run(self.store, run_id))
        except LRCError as exc:
            raise gr.Error(str(exc)) from None

    def delete(self, run_id: str, owner_key: str = "", request: gr.Request = None) -> str:
        """Delete a finished run's folder. Only the session that started it may (unless the operator allows it);
        a run that is queued or training must be stopped first, so a worker never writes into a deleted folder."""
        try:
            run = guard.open_run(self.store, run_id)
            guard.check_owner(run, request, self.ctx.settings.allow_foreign_stop, "delete", owner_key)
            if self.ctx.jobs.is_active(run.id) or run.status in ("queued", "running"):
                raise LRCError(f"run {run.id} is {run.status}; stop it first, then delete it")
            self.store.delete(run.id)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        return f"Deleted {run.id}."

    def push(self, run_id: str, repo_id: str, private: bool = True) -> str:
        """Push the run's model to the Hugging Face hub (needs HF_TOKEN in the app's environment)."""
        token = self.ctx.settings.hub_token
        if not token:
            raise gr.Error("no hub token is configured: set HF_TOKEN for the app to push models")
        try:
            url = runs_view.push_to_hub(guard.open_run(self.store, run_id), repo_id, token, private)
        except LRCError as exc:
            raise gr.Error(guard.scrub(str(exc), [token])) from None
        except Exception as exc:  # network, auth, quota: one readable line, never the token
            first = (str(exc).splitlines() or [""])[0][:300]
            raise gr.Error(guard.scrub(f"push failed: {type(exc).__name__}: {first}", [token])) from None
        return guard.scrub(f"Pushed to [{repo_id}]({url})", [token])

    # ================================================================================================ Predict
    def predict_choices(self) -> list[str]:
        return [r.id for r in self.store.list()
                if r.config.get("kind", "distill") != "teacher" and predicting.has_model(r)]

    def refresh_predict_runs(self, current: str | None):
        choices = self.predict_choices()
        return gr.update(choices=choices, value=current if current in choices else next(iter(choices), None))

    def on_predict_run(self, run_id: str):
        """Show the second text box for pair tasks and the task's example inputs."""
        if not run_id:
            return gr.update(visible=False), gr.update(choices=[], value=None), "Pick a run with a trained student."
        try:
            pair = predicting.pair_for(self.store, run_id)
        except LRCError as exc:
            return gr.update(visible=False), gr.update(choices=[], value=None), f"**{exc}**"
        examples = predicting.load_examples(pair.task)
        spec = predicting.task_spec(pair.task)
        names = (spec.text_a, spec.text_b) if spec else ("text", "text pair")
        info = (f"task **{pair.task}** · labels: {', '.join(pair.labels) or 'a score (regression)'} · "
                f"teacher `{pair.teacher or 'none recorded'}`")
        return (gr.update(visible=pair.is_pair, label=f"second sentence ({names[1]})" if pair.is_pair else None),
                gr.update(choices=[(predicting.example_label(e), i) for i, e in enumerate(examples)], value=None),
                info)

    def pick_example(self, run_id: str, index: int | None):
        if index is None or not run_id:
            return gr.skip(), gr.skip()
        try:
            pair = predicting.pair_for(self.store, run_id)
        except LRCError:
            return gr.skip(), gr.skip()
        examples = predicting.load_examples(pair.task)
        if not 0 <= int(index) < len(examples):
            return gr.skip(), gr.skip()
        ex = examples[int(index)]
        return ex["text_a"], ex.get("text_b") or ""

    def predict(self, run_id: str, text_a: str, text_b: str = "") -> tuple:
        """Teacher and student on one input: label probabilities, agreement, latency, parameter count."""
        try:
            pair = predicting.pair_for(self.store, run_id)
            result = predicting.side_by_side(pair, text_a, text_b, self.ctx.model_cache())
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        return (predicting.label_value(result["teacher"]), predicting.label_value(result["student"]),
                predicting.comparison_markdown(result), result)

    def disagreements(self, run_id: str, max_examples: int = 200) -> tuple:
        """Dev examples where the student's answer differs from the teacher's."""
        try:
            limit = max(1, min(_whole("max_examples", max_examples or 200), self.ctx.settings.disagreement_limit))
            pair = predicting.pair_for(self.store, run_id)
            result = predicting.find_disagreements(pair, self.ctx.model_cache(), limit,
                                                   data_dir=self.ctx.settings.data_dir)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        n, k = result["examples"], result["disagreements"]
        text = (f"On {n} {result['split']} examples the student agrees with the teacher on "
                f"**{result['agreement']:.1%}**; {k} disagreement{'s' if k != 1 else ''} below.") if n else \
            "No dev examples."
        # the short columns first, so the labels stay in view next to long sentences
        headers = ["gold", "teacher", "student"] + (["text_a", "text_b"] if result["is_pair"] else ["text"])
        rows = [[r["gold"], r["teacher"], r["student"], r["text_a"]] + ([r["text_b"]] if result["is_pair"] else [])
                for r in result["rows"]]
        return text, {"headers": headers, "data": rows}


# ==================================================================================================== layout
HELP = {
    "task": "GLUE task to distil on (data from the local GLUE folder, else the Hugging Face hub).",
    "teacher": "A finished teacher run, a hub id (bert-base-uncased-finetuned-…), a local model folder, or the "
               "bundled MiniLM (fine-tuned on the task first, then cached).",
    "preset": "Fills every knob below: quick-cpu (minutes on a CPU), lrc-paper (the paper's setting), "
              "kd-baseline (plain KD, to compare against).",
    "student_layers": "Transformer layers of the student (paper: 4). Student layer m learns from teacher layer m·N/M.",
    "student_hidden": "Hidden width (paper: 312). Equal to the teacher's, the student can start from its layers.",
    "student_heads": "Attention heads (paper: 12); must divide the hidden width.",
    "student_ffn": "Feed-forward width (paper: 1200).",
    "student_init": "auto: copy the teacher's mapped layers when the shapes match, else random.",
    "stage1_steps": "Steps of stage 1 (COS-NCE only). 0 and 0: use the epochs and the stage-1 share instead.",
    "stage2_steps": "Steps of stage 2 (COS-NCE + soft + hard labels).",
    "epochs": "Passes over the training examples, both stages together (when the step counts are 0).",
    "stage1_fraction": "Share of the steps spent in stage 1 (paper: 0.8).",
    "batch_size": "Examples per step; with in-batch negatives each sample has batch-1 negatives.",
    "lr": "Peak AdamW learning rate (linear warm-up and decay, restarted at the stage boundary).",
    "temperature": "Soft-label temperature T (paper: 1.1).",
    "alpha": "Weight of COS-NCE in stage 2 (paper: 1).",
    "beta": "Weight of the soft-label KL loss (paper: 1).",
    "gamma": "Weight of the hard-label cross-entropy (paper: 3).",
    "use_cos_nce": "The contrastive representation loss. Off: plain knowledge distillation (soft + hard labels).",
    "negatives": "batch: other samples of the batch are the negatives; bank: K negatives from a memory bank.",
    "num_negatives": "K, the number of negatives drawn from the bank.",
    "perturb": "Gradient perturbation of the embeddings each step (paper: on).",
    "epsilon": "Perturbation step size ε (paper: 1).",
    "max_train_examples": "Use at most N training examples (0 = all).",
    "max_eval_examples": "Evaluate on at most N dev examples (0 = all).",
    "max_seq_length": "Truncate inputs to N tokens.",
    "seed": "Random seed (data order, init, sampling).",
    "teacher_epochs": "Epochs of fine-tuning when the teacher is the bundled backbone.",
    "log_every": "A loss point every N steps.",
    "eval_every": "Also evaluate on dev every N steps (0 = at the end of each stage).",
    "run_name": "Optional run id (letters, digits, . _ -); empty = lrc-<task>-<time>.",
}


def _form(studio: Studio, values: dict[str, Any]) -> dict[str, gr.components.Component]:
    c: dict[str, gr.components.Component] = {}
    presets = list_presets()
    preset = studio.default_preset
    if preset not in presets:
        presets = presets + [preset]
    c["task"] = gr.Dropdown(list(TASKS), value=values["task"], label="Task", info=HELP["task"],
                            elem_id="lrc-task")
    c["teacher"] = gr.Dropdown(studio.teacher_choices(values["task"]), value=studio.ctx.settings.teacher or BUNDLED,
                               allow_custom_value=True, label="Teacher", info=HELP["teacher"], elem_id="lrc-teacher")
    c["preset"] = gr.Dropdown(presets, value=preset, label="Preset", info=HELP["preset"], elem_id="lrc-preset")
    with gr.Accordion("Student shape", open=False):
        with gr.Row():
            for name, label in (("student_layers", "Layers"), ("student_hidden", "Hidden"),
                                ("student_heads", "Heads"), ("student_ffn", "FFN")):
                c[name] = gr.Number(values[name], label=label, info=HELP[name], precision=0, minimum=1)
        c["student_init"] = gr.Radio(["auto", "random", "teacher"], value=values["student_init"],
                                     label="Initialisation", info=HELP["student_init"])
    with gr.Accordion("Schedule", open=True):
        with gr.Row():
            c["stage1_steps"] = gr.Number(0, label="Stage-1 steps", info=HELP["stage1_steps"], precision=0, minimum=0)
            c["stage2_steps"] = gr.Number(0, label="Stage-2 steps", info=HELP["stage2_steps"], precision=0, minimum=0)
        with gr.Row():
            c["epochs"] = gr.Number(values["epochs"], label="Epochs", info=HELP["epochs"], minimum=0)
            c["stage1_fraction"] = gr.Slider(0, 1, values["stage1_fraction"], step=0.05, label="Stage-1 share",
                                             info=HELP["stage1_fraction"])
        with gr.Row():
            c["batch_size"] = gr.Number(values["batch_size"], label="Batch size", info=HELP["batch_size"],
                                        precision=0, minimum=1)
            c["lr"] = gr.Number(values["lr"], label="Learning rate", info=HELP["lr"], minimum=0, step=1e-5)
    with gr.Accordion("Loss", open=True):
        with gr.Row():
            c["use_cos_nce"] = gr.Checkbox(values["use_cos_nce"], label="COS-NCE", info=HELP["use_cos_nce"])
            c["temperature"] = gr.Number(values["temperature"], label="Temperature T", info=HELP["temperature"],
                                         minimum=0, step=0.1)
        with gr.Row():
            c["alpha"] = gr.Number(values["alpha"], label="α (COS-NCE)", info=HELP["alpha"], minimum=0, step=0.5)
            c["beta"] = gr.Number(values["beta"], label="β (soft)", info=HELP["beta"], minimum=0, step=0.5)
            c["gamma"] = gr.Number(values["gamma"], label="γ (hard)", info=HELP["gamma"], minimum=0, step=0.5)
        with gr.Row():
            c["negatives"] = gr.Radio(["batch", "bank"], value=values["negatives"], label="Negatives",
                                      info=HELP["negatives"])
            c["num_negatives"] = gr.Number(values["num_negatives"], label="K", info=HELP["num_negatives"],
                                           precision=0, minimum=1)
        with gr.Row():
            c["perturb"] = gr.Checkbox(values["perturb"], label="Gradient perturbation", info=HELP["perturb"])
            c["epsilon"] = gr.Number(values["epsilon"], label="ε", info=HELP["epsilon"], minimum=0, step=0.1)
    with gr.Accordion("Data and run", open=False):
        with gr.Row():
            c["max_train_examples"] = gr.Number(values["max_train_examples"], label="Max train examples",
                                                info=HELP["max_train_examples"], precision=0, minimum=0)
            c["max_eval_examples"] = gr.Number(values["max_eval_examples"], label="Max dev examples",
                                               info=HELP["max_eval_examples"], precision=0, minimum=0)
        with gr.Row():
            c["max_seq_length"] = gr.Number(values["max_seq_length"], label="Max sequence length",
                                            info=HELP["max_seq_length"], precision=0, minimum=8)
            c["seed"] = gr.Number(values["seed"], label="Seed", info=HELP["seed"], precision=0, minimum=0)
        with gr.Row():
            c["teacher_epochs"] = gr.Number(values["teacher_epochs"], label="Teacher epochs",
                                            info=HELP["teacher_epochs"], minimum=0)
            c["log_every"] = gr.Number(values["log_every"], label="Log every", info=HELP["log_every"], precision=0,
                                       minimum=1)
            c["eval_every"] = gr.Number(values["eval_every"], label="Eval every", info=HELP["eval_every"],
                                        precision=0, minimum=0)
        c["run_name"] = gr.Textbox("", label="Run name", info=HELP["run_name"], placeholder="optional")
    return c


def build_app(ctx: AppContext | None = None) -> gr.Blocks:
    ctx = ctx or AppContext.create()
    studio = Studio(ctx)
    values = form_values(studio.default_preset)
    data_note = f"GLUE folder `{ctx.settings.data_dir}`" if ctx.settings.data_dir else "GLUE from the Hugging Face hub"
    stream = {"concurrency_limit": None, "concurrency_id": "stream"}  # streams only read files and sleep

    with gr.Blocks(title="LRC Studio") as demo:
        demo.studio = studio  # for tests and scripts
        gr.Markdown(
            "# LRC Studio\nDistil BERT with **LRC-BERT** (contrastive latent-representation distillation) and "
            f"watch it learn. <span class='lrc-small'>Runs in `{ctx.store.root}` · {data_note}</span>",
            elem_id="lrc-header",
        )
        with gr.Tabs():
            # ---------------------------------------------------------------------------------- Distill
            with gr.Tab("Distill", id="distill"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2, min_width=360):
                        form = _form(studio, values)
                    with gr.Column(scale=3):
                        with gr.Row():
                            distill_btn = gr.Button("Distill", variant="primary", elem_id="lrc-distill", scale=3)
                            stop_btn = gr.Button("Stop", variant="stop", elem_id="lrc-stop", scale=1)
                            resume_btn = gr.Button("Resume", elem_id="lrc-resume", scale=1)
                        progress_box = gr.Markdown("", elem_id="lrc-progress")
                        status = gr.Markdown("No run is active. Set up a run on the left and press **Distill**.",
                                             label="status", elem_id="lrc-status")
                        plot = gr.Plot(figures.loss_figure(None), label="Loss", elem_id="lrc-loss-plot")
                        with gr.Row():
                            run_id = gr.Textbox("", label="Run", interactive=False, elem_id="lrc-run-id", scale=2)
                            attach = gr.Dropdown([], label="Watch another run", info="Re-attach to a running run "
                                                 "or replay a finished one.", allow_custom_value=True, scale=2,
                                                 elem_id="lrc-attach")
                        stop_msg = gr.Markdown("")

                # who started a run: a random key in the browser's localStorage, so a reload keeps the right to stop
                owner_key = gr.BrowserState("", storage_key="lrc-owner-key")
                demo.load(guard.new_owner_key, [owner_key], [owner_key], api_visibility="private")
                inputs = [form[name] for name in FORM_FIELDS] + [owner_key]
                outputs = [run_id, status, plot]
                distill_ev = distill_btn.click(studio.distill_form, inputs, outputs, api_visibility="private",
                                               show_progress_on=[progress_box], **stream)
                stop_btn.click(studio.stop, [run_id, owner_key], [stop_msg], api_name="_stop_button",
                               api_visibility="private", concurrency_limit=None)
                gr.api(studio.stop_api, api_name="stop", concurrency_limit=None)
                resume_btn.click(studio.resume, [run_id], outputs, api_name="resume",
                                 show_progress_on=[progress_box], **stream)
                # a new page or a refresh re-attaches to the running run
                load_watch = demo.load(studio.on_load, None, [run_id, attach], api_visibility="private").then(
                    studio.watch, [run_id], outputs, api_name="_reattach", api_visibility="private",
                    show_progress_on=[progress_box], **stream)
                gr.api(studio.distill, api_name="distill", **stream)
                gr.api(studio.watch_state, api_name="watch", **stream)
                attach_watch = attach.input(studio.watch, [attach], outputs, api_name="_attach",
                                            api_visibility="private", show_progress_on=[progress_box],
                                            cancels=[distill_ev, load_watch], **stream)
                # one stream per page: a new run replaces whatever the page was watching
                distill_btn.click(None, None, None, cancels=[attach_watch, load_watch], api_visibility="private")
                form["preset"].input(studio.apply_preset, [form["preset"]], [form[n] for n in PRESET_FIELDS],
                                     api_visibility="private")
                form["task"].input(studio.on_task_change, [form["task"], form["teacher"]], [form["teacher"]],
                                   api_visibility="private")

            # ------------------------------------------------------------------------------------- Runs
            with gr.Tab("Runs", id="runs") as runs_tab:
                with gr.Row():
                    refresh_btn = gr.Button("Refresh", size="sm", scale=0, elem_id="lrc-refresh")
                    gr.Markdown("Every run in the store, from the app or the CLI, newest first. Runs survive "
                                "restarts: they are folders.", elem_classes="lrc-small")
                table = gr.Dataframe(headers=runs_view.TABLE_COLUMNS, interactive=False, wrap=True,
                                     elem_id="lrc-runs-table", max_height=420,
                                     column_widths=runs_view.TABLE_WIDTHS)
                gr.Markdown("### Compare")
                with gr.Row():
                    pick = gr.Dropdown([], multiselect=True, label="Runs to compare", allow_custom_value=True,
                                       info="Pick two or more, e.g. LRC vs kd-baseline, perturbation on vs off.",
                                       scale=3, elem_id="lrc-compare-pick")
                    term = gr.Radio([(name, key) for key, name in figures.TERMS], value="loss", label="Loss term",
                                    scale=2)
                    compare_btn = gr.Button("Compare", variant="primary", scale=0)
                compare_plot = gr.Plot(figures.compare_figure([]), label="Curves", elem_id="lrc-compare-plot")
                compare_table = gr.Dataframe(headers=["run", "method", "score"], interactive=False, wrap=True,
                                             label="Metrics and differing settings")
                score_plot = gr.Plot(figures.score_figure([], "score"), label="Scores")
                gr.Markdown("### Experiments")
                with gr.Row():
                    exp_pick = gr.Dropdown([], label="Experiment", scale=2, elem_id="lrc-experiment-pick",
                                           info="Made by `python -m lrc experiment`: baselines, LRC and its "
                                                "ablations over seeds. Picking one also picks its seed-0 runs "
                                                "for Compare above.")
                    exp_refresh = gr.Button("Refresh", size="sm", scale=0)
                exp_table = gr.Dataframe(headers=runs_view.EXPERIMENT_COLUMNS, interactive=False, wrap=True,
                                         elem_id="lrc-experiment-table")
                exp_plot = gr.Plot(figures.experiment_figure([], None, "score"), label="Variants",
                                   elem_id="lrc-experiment-plot")
                exp_note = gr.Markdown("", elem_classes="lrc-small")
                gr.Markdown("### Export")
                with gr.Row():
                    export_pick = gr.Dropdown([], label="Run", info="A run with a saved model.", scale=2,
                                              allow_custom_value=True)
                    download_btn = gr.Button("Download student (.zip)", scale=1)
                    download_file = gr.File(label="Zip", interactive=False, scale=2)
                hub_ready = bool(ctx.settings.hub_token)
                with gr.Row(visible=hub_ready):
                    repo = gr.Textbox(label="Hub repository", placeholder="your-user/lrc-sst2-student", scale=2)
                    private = gr.Checkbox(True, label="Private", scale=0)
                    push_btn = gr.Button("Push to hub", scale=1)
                with gr.Row():
                    delete_btn = gr.Button("Delete run", variant="stop", size="sm", scale=0, elem_id="lrc-delete")
                    delete_msg = gr.Markdown("", elem_classes="lrc-small")
                push_msg = gr.Markdown("" if hub_ready else
                                       "<span class='lrc-small'>Pushing to the hub needs a token: start the app "
                                       "with `HF_TOKEN` set.</span>")

                refresh_outputs = [table, pick, export_pick]
                refresh_btn.click(studio.runs_table, None, refresh_outputs, api_visibility="private")
                runs_tab.select(studio.runs_table, None, refresh_outputs, api_visibility="private")
                runs_tab.select(studio.experiment_choices, None, [exp_pick], api_visibility="private")
                exp_refresh.click(studio.experiment_choices, None, [exp_pick], api_visibility="private")
                exp_pick.input(studio.experiment_view, [exp_pick], [exp_table, exp_plot, exp_note, pick],
                               api_visibility="private")
                gr.api(studio.experiment_api, api_name="experiment")
                compare_outputs = [compare_plot, score_plot, compare_table]
                compare_btn.click(studio.compare, [pick, term], compare_outputs, api_name="compare")
                term.input(studio.compare, [pick, term], compare_outputs, api_visibility="private")
                download_btn.click(studio.download, [export_pick], [download_file], api_name="download")
                push_btn.click(studio.push, [export_pick, repo, private], [push_msg], api_name="push")
                gr.api(studio.delete_api, api_name="delete")
                delete_btn.click(studio.delete, [export_pick, owner_key], [delete_msg], api_name="_delete_button",
                                 api_visibility="private").then(
                    studio.runs_table, None, refresh_outputs, api_visibility="private")
                gr.api(studio.runs, api_name="runs")

            # ---------------------------------------------------------------------------------- Predict
            with gr.Tab("Predict", id="predict") as predict_tab:
                with gr.Row(equal_height=False):
                    with gr.Column(scale=2):
                        p_run = gr.Dropdown(studio.predict_choices(), label="Student run", allow_custom_value=True,
                                            info="A run with a trained student; its teacher is compared with it.",
                                            elem_id="lrc-predict-run")
                        p_info = gr.Markdown("", elem_classes="lrc-small")
                        p_example = gr.Dropdown([], label="Example inputs", elem_id="lrc-example")
                        text_a = gr.Textbox(label="Sentence", lines=2, placeholder="Type a sentence",
                                            elem_id="lrc-text-a")
                        text_b = gr.Textbox(label="Second sentence", lines=2, visible=False, elem_id="lrc-text-b")
                        predict_btn = gr.Button("Predict", variant="primary", elem_id="lrc-predict")
                    with gr.Column(scale=3):
                        with gr.Row():
                            teacher_label = gr.Label(label="Teacher", elem_id="lrc-teacher-label")
                            student_label = gr.Label(label="Student", elem_id="lrc-student-label")
                        verdict = gr.Markdown("", label="comparison", elem_id="lrc-verdict")
                        with gr.Accordion("Raw result", open=False):
                            raw = gr.JSON()
                with gr.Accordion("Disagreements on the dev set", open=False):
                    with gr.Row():
                        dis_n = gr.Slider(10, ctx.settings.disagreement_limit, 200, step=10,
                                          label="Dev examples to score", scale=3)
                        dis_btn = gr.Button("Find disagreements", scale=1)
                    dis_text = gr.Markdown("")
                    dis_table = gr.Dataframe(interactive=False, wrap=True, elem_id="lrc-disagreements")

                p_run.change(studio.on_predict_run, [p_run], [text_b, p_example, p_info], api_visibility="private")
                p_example.input(studio.pick_example, [p_run, p_example], [text_a, text_b], api_visibility="private")
                predict_event = dict(fn=studio.predict, inputs=[p_run, text_a, text_b],
                                     outputs=[teacher_label, student_label, verdict, raw],
                                     concurrency_limit=2, concurrency_id="predict")
                predict_btn.click(**predict_event, api_name="predict")
                text_a.submit(**predict_event, api_visibility="private")
                dis_btn.click(studio.disagreements, [p_run, dis_n], [dis_text, dis_table], api_name="disagreements",
                              concurrency_limit=1)
                predict_tab.select(studio.refresh_predict_runs, [p_run], [p_run], api_visibility="private")

            # ----------------------------------------------------------------------------------- Layers
            with gr.Tab("Layers", id="layers"):
                build_layers_tab(ctx.store, ctx.settings.layers_cache_mb)

        demo.load(studio.runs_table, None, refresh_outputs, api_visibility="private")
    return demo


def launch_kwargs(settings: Any = None) -> dict[str, Any]:
    """Theme and CSS go to launch() in Gradio 6, and so does the upload limit: Gradio's upload route takes files
    from anyone even though no tab asks for one, so its size is capped (LRC_MAX_UPLOAD_MB, answered with 413)."""
    mb = getattr(settings, "max_upload_mb", None) or 20
    return {"theme": gr.themes.Soft(primary_hue="indigo", secondary_hue="emerald"), "css": CSS,
            "max_file_size": f"{int(mb)}mb"}
