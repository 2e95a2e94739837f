"""The Compare tab: several runs' loss curves on one plot with their scores and differing settings, and an
experiment (`python -m lrc experiment`: baselines, LRC and its ablations over seeds) as one table and one plot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from lrc.errors import LRCError
from lrc.experiment import experiment_rows, list_experiments, load_experiment

from .. import figures, guard, runs_view
from ..common import metric_for
from ..state import AppContext

PRIVATE = {"api_visibility": "private"}


class CompareCallbacks:
    """The Compare tab's callbacks; mixed into `studio.ui.Studio`."""

    ctx: AppContext

    def compare(self, run_ids: list[str], term: str = "loss"):
        """Overlay the picked runs' loss curves (a term: loss, cos_nce, soft, hard) and line their metrics up."""
        run_ids = [run_ids] if isinstance(run_ids, str) else [r for r in (run_ids or []) if r]
        records, series = [], []
        for rid in run_ids:
            try:
                run = guard.open_run(self.ctx.store, rid)
            except LRCError as exc:
                raise gr.Error(str(exc)) from None
            records.append(runs_view.run_record(run))
            series.append((rid, figures.curves_of(run.iter_events()), metric_for(run.config.get("task"))))
        fig = figures.compare_figure(series, term or "loss")
        metrics = {m for _r, _c, m in series}
        score_fig = figures.score_figure(records, metrics.pop() if len(metrics) == 1 else "score")
        headers, rows = runs_view.compare_rows(records)
        return fig, score_fig, {"headers": headers, "data": rows}

    # ---- experiments: one table and one plot ------------------------------------------------------------------
    def experiment_choices(self):
        return gr.update(choices=list_experiments(self.ctx.store))

    def experiment_api(self, name: str) -> dict[str, Any]:
        """API: an experiment's rows (variant, mean, std, seeds, share of the teacher), teacher and robustness."""
        try:
            result = load_experiment(self.ctx.store, name)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        return {"name": name, "task": result.get("task"), "teacher_score": result.get("teacher_score"),
                "rows": experiment_rows(result), "robustness": result.get("robustness"),
                "finished": bool(result.get("finished"))}

    def experiment_view(self, name: str):
        """The experiment section: table, plot, notes, and its seed-0 runs picked for the curves above."""
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
        existing = [rid for rid in first_seed if (self.ctx.store.root / rid / "config.json").exists()]
        return table, fig, note, gr.update(value=existing)


@dataclass
class CompareHandles:
    pick: gr.Dropdown
    experiment_pick: gr.Dropdown


def build(studio: Any) -> CompareHandles:
    """Lay out the Compare tab and wire its own events (inside `with gr.Tab(...)`)."""
    with gr.Row():
        pick = gr.Dropdown([], multiselect=True, label="Runs to compare", allow_custom_value=True,
                           info="Pick two or more, e.g. LRC vs kd-baseline, perturbation on vs off.", scale=3,
                           elem_id="lrc-compare-pick")
        term = gr.Radio([(name, key) for key, name in figures.TERMS], value="loss", label="Loss term", scale=2)
        compare_btn = gr.Button("Compare", variant="primary", scale=0)
    compare_plot = gr.Plot(figures.compare_figure([]), label="Curves", elem_id="lrc-compare-plot")
    compare_table = gr.Dataframe(headers=["run", "method", "score"], interactive=False, wrap=True,
                                 label="Metrics and differing settings")
    score_plot = gr.Plot(figures.score_figure([], "score"), label="Scores")
    gr.Markdown("### Experiments")
    with gr.Row():
        exp_pick = gr.Dropdown([], label="Experiment", scale=2, elem_id="lrc-experiment-pick",
                               info="Made by `python -m lrc experiment`: baselines, LRC and its ablations over "
                                    "seeds. Picking one also picks its seed-0 runs for the curves above.")
        exp_refresh = gr.Button("Refresh", size="sm", scale=0)
    exp_table = gr.Dataframe(headers=runs_view.EXPERIMENT_COLUMNS, interactive=False, wrap=True,
                             elem_id="lrc-experiment-table")
    exp_plot = gr.Plot(figures.experiment_figure([], None, "score"), label="Variants", elem_id="lrc-experiment-plot")
    exp_note = gr.Markdown("", elem_classes="lrc-small")

    exp_refresh.click(studio.experiment_choices, None, [exp_pick], **PRIVATE)
    exp_pick.input(studio.experiment_view, [exp_pick], [exp_table, exp_plot, exp_note, pick], **PRIVATE)
    gr.api(studio.experiment_api, api_name="experiment")
    compare_outputs = [compare_plot, score_plot, compare_table]
    compare_btn.click(studio.compare, [pick, term], compare_outputs, api_name="compare")
    term.input(studio.compare, [pick, term], compare_outputs, **PRIVATE)
    return CompareHandles(pick=pick, experiment_pick=exp_pick)
