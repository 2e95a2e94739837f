"""LRC Studio's page: the tabs, assembled, and the wiring that crosses tabs.

Each tab lives in `studio/tabs/<name>.py` with its callbacks (a mixin of `Studio`) and a `build(...)` that lays
the tab out, wires its own events and returns the handles others need. `Studio` joins the callbacks in one object,
so the UI, the API and the tests call the same plain methods (tests call them without a browser).

Named API endpoints (`distill`, `watch`, `stop`, `resume`, `runs`, `compare`, `experiment`, `predict`,
`disagreements`, `download`, `delete`, `push`) make the same functions callable with `gradio_client`. Every run id
from a request goes through `guard.open_run`, every teacher through `guard.check_teacher` and `preflight`, Stop and
Delete through `guard.check_owner`.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from . import guard
from .state import AppContext
from .tabs import compare, distill, layers, predict, runs
from .watch import WatchCallbacks

CSS = """
#lrc-header h1 {margin-bottom: 0}
#lrc-status {min-height: 4.5em}
#lrc-progress {min-height: 4.5em}
.lrc-small {font-size: 0.9em; color: var(--body-text-color-subdued)}
"""
PRIVATE = {"api_visibility": "private"}


class Studio(distill.DistillCallbacks, WatchCallbacks, runs.RunsCallbacks, compare.CompareCallbacks,
             predict.PredictCallbacks):
    """The app's callbacks, one mixin per tab, over one shared `AppContext`."""

    def __init__(self, ctx: AppContext):
        self.ctx = ctx

    @property
    def store(self):
        return self.ctx.store


def build_app(ctx: AppContext | None = None) -> gr.Blocks:
    ctx = ctx or AppContext.create()
    studio = Studio(ctx)
    data_note = f"GLUE folder `{ctx.settings.data_dir}`" if ctx.settings.data_dir else "GLUE from the Hugging Face hub"
    with gr.Blocks(title="LRC Studio") as demo:
        demo.studio = studio  # for tests and scripts
        gr.Markdown(
            "# LRC Studio\nDistil BERT with **LRC-BERT** (contrastive latent-representation distillation) and "
            f"watch it learn. <span class='lrc-small'>Runs in `{ctx.store.root}` · {data_note}</span>",
            elem_id="lrc-header",
        )
        # who started a run: a random key in the browser's localStorage, so a reload keeps the right to stop it
        owner_key = gr.BrowserState("", storage_key="lrc-owner-key")
        demo.load(guard.new_owner_key, [owner_key], [owner_key], **PRIVATE)
        with gr.Tabs():
            with gr.Tab("Distill", id="distill"):
                distill.build(studio, owner_key, demo)
            with gr.Tab("Runs", id="runs") as runs_tab:
                runs_h = runs.build(studio, owner_key)
            with gr.Tab("Compare", id="compare") as compare_tab:
                compare_h = compare.build(studio)
            with gr.Tab("Predict", id="predict") as predict_tab:
                predict_h = predict.build(studio)
            with gr.Tab("Layers", id="layers") as layers_tab:
                layers_h = layers.build(ctx.store, ctx.settings.layers_cache_mb)

        # the run lists every tab shows are refreshed when the page loads and when a tab is opened
        lists = [runs_h.table, compare_h.pick, runs_h.export_pick]
        for trigger in (demo.load, runs_tab.select, compare_tab.select, runs_h.refresh.click, runs_h.deleted.then):
            trigger(studio.runs_table, None, lists, **PRIVATE)
        compare_tab.select(studio.experiment_choices, None, [compare_h.experiment_pick], **PRIVATE)
        predict_tab.select(studio.refresh_predict_runs, [predict_h.run], [predict_h.run], **PRIVATE)
        layers_tab.select(layers_h.refresh, [layers_h.run], [layers_h.run], **PRIVATE)
    return demo


def launch_kwargs(settings: Any = None) -> dict[str, Any]:
    """Theme and CSS go to launch() in Gradio 6, and so does the upload limit: Gradio's upload route takes files
    from anyone even though no tab asks for one, so its size is capped (LRC_MAX_UPLOAD_MB, answered with 413)."""
    mb = getattr(settings, "max_upload_mb", None) or 20
    return {"theme": gr.themes.Soft(primary_hue="indigo", secondary_hue="emerald"), "css": CSS,
            "max_file_size": f"{int(mb)}mb"}
