"""Watching a run: read its folder as events land and turn them into the status line, the loss figure and the
API's JSON state.

Training never runs in a request. A page (or an API client) that watches a run only reads the run folder, so a
refresh, a second tab or a restart re-attaches to the same run, and what the Distill button shows is the same
thing the `watch` endpoint streams.
"""

from __future__ import annotations

import time
from typing import Any, Iterator

import gradio as gr

from lrc.errors import LRCError
from lrc.runs import TERMINAL

from . import figures, guard, predicting, runs_view
from .common import fmt_time, metric_for, ordinal
from .state import AppContext

POLL_S = 0.5  # how often a stream looks for new events
FIRST_POLL_S = 0.1  # until the first loss point has arrived: that moment is what a user waits for
HEARTBEAT_S = 3.0  # refresh the status line (ETA, queue place) at least this often, even without new events
TERMINAL_STATES = set(TERMINAL)
IDLE = "No run is active. Set up a run on the left and press **Distill**."


class WatchCallbacks:
    """Streams of one run's state; mixed into `studio.ui.Studio`."""

    ctx: AppContext

    def watch(self, run_id: str, progress=gr.Progress()) -> Iterator[tuple]:
        """Attach to any run of the store and stream it until it ends (returns at once for a finished run)."""
        if run_id is None or (isinstance(run_id, str) and not run_id.strip()):
            yield "", IDLE, figures.loss_figure(None)
            return
        try:
            run = guard.open_run(self.ctx.store, run_id)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        yield from self.stream(run.id, progress)

    def watch_state(self, run_id: str) -> Iterator[dict[str, Any]]:
        """API: stream the state of any run (running, waiting or finished) until it ends."""
        try:
            run = guard.open_run(self.ctx.store, run_id)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        yield from self.stream_state(run.id)

    def follow(self, run_id: str, progress=None) -> Iterator[tuple[figures.Curves, dict[str, Any], str, bool, bool]]:
        """Read a run's events as they land: yields (curves, queue info, status, new events?, done?) whenever
        there is something to show (new events, or a heartbeat for the ETA and queue place)."""
        run = self.ctx.store.get(run_id)
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
        metric = metric_for(self.ctx.store.get(run_id).config.get("task"))
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
            out["summary"] = self.ctx.store.get(run_id).summary
            out["curves"] = {k: [list(p) for p in v] for k, v in curves.series.items()}
            out["evals"] = curves.evals
            out["stage2_at"] = curves.stage2_at
        return out

    @staticmethod
    def _progress(progress, curves: figures.Curves, info: dict[str, Any], status: str) -> None:
        if progress is None:
            return
        if info.get("state") == "waiting":
            progress(0.0, desc=f"waiting in the queue ({ordinal(info['position'])} in line)")
        elif curves.last_step and curves.total_steps:
            progress((curves.step, curves.total_steps), desc="distilling", unit="steps")
        elif curves.teacher_step and not curves.teacher_ready:
            t = curves.teacher_step
            progress((int(t["step"]), int(t.get("total_steps") or 0) or None), desc="fine-tuning the teacher",
                     unit="steps")
        elif status not in TERMINAL_STATES:
            progress(None, desc="loading data and models")

    def status_markdown(self, run_id: str, curves: figures.Curves, info: dict[str, Any], status: str) -> str:
        run = self.ctx.store.get(run_id)
        cfg = run.config
        head = (f"**{run_id}** · {cfg.get('task')} · {runs_view.method_of(cfg, run.kind)} · "
                f"student {runs_view.shape_of(cfg, run.kind)}")
        lines = [head]
        state = info.get("state")
        if state == "waiting":
            ahead = info["ahead"]
            lines.append(f"**Waiting in the queue: {ordinal(info['position'])} in line** "
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
            parts.append(f"elapsed {fmt_time(elapsed)}")
            if status not in TERMINAL_STATES:
                parts.append(f"ETA {fmt_time(eta)}")
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
                text = f"**Completed** in {fmt_time(summary.get('seconds'))}"
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
