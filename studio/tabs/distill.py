"""The Distill tab: the knob form, the Distill / Stop / Resume buttons, and the live loss plot.

Pressing Distill turns the form into a validated `DistillConfig` (`build_config`: the preset, the form's knobs
over it, the teacher checked by `guard` and `preflight`), hands it to the job queue, and then only watches the
run folder (`studio.watch`). The `distill`, `watch`, `stop` and `resume` API endpoints are the same callbacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import gradio as gr

from lrc.config import DistillConfig, list_presets, load_preset
from lrc.errors import LRCError
from lrc.runs import validate_run_id
from lrc.tasks import TASKS

from .. import figures, guard, predicting, preflight
from ..common import BUNDLED, gpu_likely
from ..form import (
    EXTRA_HELP,
    FORM_FIELDS,
    PRESET_FIELDS,
    build_knob_widgets,
    coerce_settings,
    form_values,
    settings_from_values,
)
from ..state import AppContext
from ..watch import IDLE

STREAM = {"concurrency_limit": None, "concurrency_id": "stream"}  # streams only read files and sleep
PRIVATE = {"api_visibility": "private"}


class DistillCallbacks:
    """The Distill tab's callbacks; mixed into `studio.ui.Studio` (which also brings the watch streams)."""

    ctx: AppContext

    @property
    def default_preset(self) -> str:
        return self.ctx.settings.preset or ("lrc-paper" if gpu_likely() else "quick-cpu")

    # ---- the form ---------------------------------------------------------------------------------------------
    def teacher_choices(self, task: str | None = None) -> list[tuple[str, str]]:
        """The bundled default plus every finished teacher run of the store (for this task when one is given)."""
        choices = [("bundled MiniLM, fine-tuned on the task first (cached)", BUNDLED)]
        for run in self.ctx.store.list():
            if run.kind != "teacher" or run.status != "completed" or not predicting.has_model(run):
                continue
            if task and run.config.get("task") != task:
                continue
            score = run.summary.get("score")
            label = f"teacher run {run.id}" + (f" ({score:.3f} {run.summary.get('main_metric')})"
                                               if isinstance(score, float) else "")
            choices.append((label, str(run.path)))
        return choices

    def on_task_change(self, task: str, teacher: str):
        choices = self.teacher_choices(task)
        values = {v for _l, v in choices}
        keep = teacher if teacher and (teacher in values or not teacher.startswith(str(self.ctx.store.root))) \
            else BUNDLED
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

    def build_config(self, task: str, preset: str | None, teacher: str | None, settings: dict[str, Any] | None,
                     run_name: str | None = None) -> tuple[DistillConfig, str | None]:
        """A validated DistillConfig: the preset, then `settings` over it (knobs by name, or `stage1_steps` /
        `stage2_steps`), on the app's data folder; plus the run id asked for, if any."""
        preset = self.check_preset(preset)
        if settings is not None and not isinstance(settings, dict):
            raise LRCError(f"settings must be a JSON object of knob: value, e.g. {{\"lr\": 1e-4}}; "
                           f"got {settings!r:.80}")
        if run_name is not None and not isinstance(run_name, str):
            raise LRCError(f"run_name must be text (letters, digits, '.', '_' and '-'); got {run_name!r}")
        changes = coerce_settings(dict(settings or {}))
        if not isinstance(task, str) or task not in TASKS:
            raise LRCError(f"unknown task {task!r}; choose one of: {', '.join(TASKS)}")
        base = DistillConfig.from_dict(load_preset(preset)) if preset else DistillConfig()
        app = self.ctx.settings
        teacher = guard.check_teacher(teacher, self.ctx.store, app.allow_local_paths, (app.teacher,))
        s1, s2 = changes.pop("stage1_steps", 0), changes.pop("stage2_steps", 0)
        if s1 < 0 or s2 < 0:
            raise LRCError("stage-1 and stage-2 steps must be >= 0 (0 and 0: use epochs and the stage-1 share)")
        if s1 or s2:
            changes.update(max_steps=s1 + s2, stage1_fraction=s1 / (s1 + s2), two_stage=s1 > 0)
        cfg = base.override(**changes, task=task, data_dir=app.data_dir)
        cfg = cfg.override(_keep_none=True, teacher=teacher)
        if not cfg.use_cos_nce:
            cfg = cfg.override(alpha=0.0)
        cfg.validate()
        preflight.check_against_teacher(cfg)
        run_id = (run_name or "").strip() or None
        if run_id:
            validate_run_id(run_id)
            if (self.ctx.store.root / run_id).exists():
                raise LRCError(f"a run named {run_id!r} already exists; pick another name or leave it empty")
        return cfg, run_id

    def config_from_form(self, values: dict[str, Any]) -> tuple[DistillConfig, str | None]:
        """The Distill form as a config: every knob on the form is explicit (a preset change refills them)."""
        return self.build_config(values["task"], values.get("preset"), values.get("teacher"),
                                 settings_from_values(values), values.get("run_name"))

    # ---- runs ---------------------------------------------------------------------------------------------------
    def _submit(self, cfg: DistillConfig, run_id: str | None, preset: str | None, request,
                owner_key: str = "") -> str:
        owner = guard.session_of(request, owner_key)
        return self.ctx.jobs.submit(cfg, owner=owner, run_id=run_id, preset=self.check_preset(preset)).id

    def distill_form(self, values: dict[str, Any], owner_key: str = "", request: gr.Request = None,
                     progress=None) -> Iterator[tuple]:
        """The Distill button: queue a run from the form (its values by field name) and stream (run id, status,
        loss figure) until it ends."""
        try:
            cfg, run_id = self.config_from_form(values)
            run_id = self._submit(cfg, run_id, values.get("preset"), request, owner_key)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        yield from self.stream(run_id, progress)

    def distill(self, task: str = "sst2", preset: str | None = None, teacher: str | None = None,
                settings: dict[str, Any] | None = None, run_name: str | None = None,
                request: gr.Request = None) -> Iterator[dict[str, Any]]:
        """API: queue a run and stream its state (a dict per update) until it ends.

        `preset`: one of the bundled presets (default: the app's starting preset). `teacher`: a teacher run
        folder, model folder or hub id (default: the app's, else the bundled MiniLM fine-tuned first).
        `settings`: any knob over the preset, by name, e.g. {"max_train_examples": 500, "perturb": False,
        "student_layers": 4, "stage1_steps": 80, "stage2_steps": 20} (`python -m lrc knobs` lists them).
        """
        try:
            cfg, run_id = self.build_config(task, preset or self.default_preset,
                                            teacher if teacher is not None else self.ctx.settings.teacher,
                                            settings, run_name)
            run_id = self._submit(cfg, run_id, preset or self.default_preset, request)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        yield from self.stream_state(run_id)

    def stop(self, run_id: str, owner_key: str = "", request: gr.Request = None) -> str:
        """Stop a run at its next step (the student is saved); a run still waiting is taken off the queue.
        Only the session that started the run may stop it (unless the operator allows it)."""
        run_id = (run_id or "").strip() if isinstance(run_id, str) else run_id
        if not run_id:
            return "No run to stop."
        try:
            run = guard.open_run(self.ctx.store, run_id)
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

    def stop_api(self, run_id: str, request: gr.Request = None) -> str:
        """API: stop a run started by this API session (the page's browser key is not part of the API)."""
        return self.stop(run_id, "", request)

    def resume(self, run_id: str, request: gr.Request = None, progress=None) -> Iterator[tuple]:
        """Continue a stopped or interrupted run from its checkpoint, then stream it like a new one.

        Open to every session (unlike Stop and Delete): resuming destroys nothing, and after an app restart the
        session that started the run is gone."""
        run = self._queue_resume(run_id)
        yield from self.stream(run.id, progress)

    def resume_api(self, run_id: str, request: gr.Request = None) -> Iterator[dict[str, Any]]:
        """API: resume a run and stream its state as `distill` does (a dict per update)."""
        run = self._queue_resume(run_id)
        yield from self.stream_state(run.id)

    def _queue_resume(self, run_id: str):
        run_id = (run_id or "").strip() if isinstance(run_id, str) else run_id
        if not run_id:
            raise gr.Error("No run to resume: pick one under 'Watch another run' first.")
        try:
            run = guard.open_run(self.ctx.store, run_id)
            self.ctx.jobs.resume(run.id)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        return run

    def active_runs(self) -> list[str]:
        """Runs to re-attach to: this app's queue (running first), then any run the store reports running."""
        ids = [job.run_id for job in self.ctx.jobs.active()]
        for run in self.ctx.store.list():
            if run.id not in ids and run.status == "running" and run.kind != "teacher":
                ids.append(run.id)
        return ids

    def on_load(self) -> tuple:
        """A new page (or a refresh) re-attaches to the running run, if any."""
        active = self.active_runs()
        recent = [r.id for r in self.ctx.store.list() if r.kind != "teacher"][:30]
        choices = active + [r for r in recent if r not in active]
        current = active[0] if active else ""
        return current, gr.update(choices=choices, value=current or None)


# ==================================================================================================== layout

@dataclass
class DistillHandles:
    """What other tabs and the page's load events need from this tab."""

    run_id: gr.Textbox
    attach: gr.Dropdown


def _top_widgets(studio: DistillCallbacks, values: dict[str, Any]) -> dict[str, Any]:
    presets = list_presets()
    preset = studio.default_preset
    if preset not in presets:
        presets = presets + [preset]
    return {
        "task": gr.Dropdown(list(TASKS), value=values["task"], label="Task", info=EXTRA_HELP["task"],
                            elem_id="lrc-task"),
        "teacher": gr.Dropdown(studio.teacher_choices(values["task"]), value=studio.ctx.settings.teacher or BUNDLED,
                               allow_custom_value=True, label="Teacher", info=EXTRA_HELP["teacher"],
                               elem_id="lrc-teacher"),
        "preset": gr.Dropdown(presets, value=preset, label="Preset", info=EXTRA_HELP["preset"], elem_id="lrc-preset"),
    }


def build(studio: Any, owner_key: gr.BrowserState, demo: gr.Blocks) -> DistillHandles:
    """Lay out the Distill tab and wire its events (inside `with gr.Tab(...)`)."""
    values = form_values(studio.default_preset)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=360):
            form = _top_widgets(studio, values)
            form.update(build_knob_widgets(values))
            form["run_name"] = gr.Textbox("", label="Run name", info=EXTRA_HELP["run_name"], placeholder="optional")
        with gr.Column(scale=3):
            with gr.Row():
                distill_btn = gr.Button("Distill", variant="primary", elem_id="lrc-distill", scale=3)
                stop_btn = gr.Button("Stop", variant="stop", elem_id="lrc-stop", scale=1)
                resume_btn = gr.Button("Resume", elem_id="lrc-resume", scale=1)
            progress_box = gr.Markdown("", elem_id="lrc-progress")
            status = gr.Markdown(IDLE, label="status", elem_id="lrc-status")
            plot = gr.Plot(figures.loss_figure(None), label="Loss", elem_id="lrc-loss-plot")
            with gr.Row():
                run_id = gr.Textbox("", label="Run", interactive=False, elem_id="lrc-run-id", scale=2)
                attach = gr.Dropdown([], label="Watch another run", info="Re-attach to a running run or replay a "
                                     "finished one.", allow_custom_value=True, scale=2, elem_id="lrc-attach")
            stop_msg = gr.Markdown("")

    names = list(FORM_FIELDS)
    components = [form[name] for name in names]

    # the form travels as a set of components: gradio hands the handler {component: value}, read back by name
    def on_distill(data: dict, request: gr.Request, progress=gr.Progress()):
        values = {name: data[form[name]] for name in names}
        yield from studio.distill_form(values, data[owner_key], request, progress)

    def on_resume(run: str, request: gr.Request, progress=gr.Progress()):
        yield from studio.resume(run, request, progress)

    def on_watch(run: str, progress=gr.Progress()):
        yield from studio.watch(run, progress)

    outputs = [run_id, status, plot]
    distill_ev = distill_btn.click(on_distill, {*components, owner_key}, outputs, show_progress_on=[progress_box],
                                   **PRIVATE, **STREAM)
    stop_btn.click(studio.stop, [run_id, owner_key], [stop_msg], api_name="_stop_button", concurrency_limit=None,
                   **PRIVATE)
    gr.api(studio.stop_api, api_name="stop", concurrency_limit=None)
    resume_btn.click(on_resume, [run_id], outputs, show_progress_on=[progress_box], api_name="_resume_button",
                     **PRIVATE, **STREAM)
    gr.api(studio.resume_api, api_name="resume", **STREAM)
    # a new page or a refresh re-attaches to the running run
    load_watch = demo.load(studio.on_load, None, [run_id, attach], **PRIVATE).then(
        on_watch, [run_id], outputs, api_name="_reattach", show_progress_on=[progress_box], **PRIVATE, **STREAM)
    gr.api(studio.distill, api_name="distill", **STREAM)
    gr.api(studio.watch_state, api_name="watch", **STREAM)
    attach_watch = attach.input(on_watch, [attach], outputs, api_name="_attach", show_progress_on=[progress_box],
                                cancels=[distill_ev, load_watch], **PRIVATE, **STREAM)
    # one stream per page: a new run replaces whatever the page was watching
    distill_btn.click(None, None, None, cancels=[attach_watch, load_watch], **PRIVATE)
    form["preset"].input(studio.apply_preset, [form["preset"]], [form[n] for n in PRESET_FIELDS], **PRIVATE)
    form["task"].input(studio.on_task_change, [form["task"], form["teacher"]], [form["teacher"]], **PRIVATE)
    return DistillHandles(run_id=run_id, attach=attach)
