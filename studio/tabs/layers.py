"""The Layers tab: how the student's layers line up with the teacher's, for one run.

Layout and callbacks only: every number comes from `lrc.analysis.RunAnalysis` (which caches per run, student
variant, representation, example count and layer), every figure from `studio.layer_figures`. The callbacks are
plain functions of plain values, so tests call them without a browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from lrc.analysis import REPRESENTATIONS, get_run_analysis, set_cache_budget, warm_up_umap
from lrc.errors import LRCError
from lrc.runs import RunStore

from .. import layer_figures as lf
from ..guard import open_run

VARIANTS = [("trained student", "trained"), ("initial student (untrained)", "initial")]
HEATMAP_VALUES = [("cosine to own teacher vector", "cos_own"), ("cosine to other examples (negatives)", "cos_neg"),
                  ("margin (own − negatives)", "margin")]
METHODS = [("UMAP", "umap"), ("PCA (fast)", "pca")]
DEFAULT_EXAMPLES = 256
MIN_EXAMPLES, MAX_EXAMPLES = 16, 2048  # the examples slider's range (its top comes down to a smaller dev set)
MEMORY_NOTE = ("tokens keeps every token of every layer: about 70 MB per model for 256 SST-2 examples with the "
               "6-layer MiniLM teacher")

INTRO = (
    "How the student's layers line up with the teacher's on a sample of dev examples. Rows are teacher layers, "
    "columns student layers (0 = embeddings); the black boxes are the layer map the run trained. "
    "Each view says how many examples it used and how long it took; views are cached per run and layer, so "
    "coming back to one is instant. See docs/LAYERS.md for how to read each plot."
)


# ---- run choices ------------------------------------------------------------------------------------------------

def analysable_runs(store: RunStore) -> list[tuple[str, str]]:
    """(label, run id) of runs that have a saved student and a teacher to compare it with, newest first."""
    out = []
    for run in store.list():
        cfg = run.config
        if run.kind == "teacher" or not (run.path / "student" / "config.json").exists():
            continue
        status = run.status
        label = f"{run.id} · {cfg.get('task', '?')} · {status}"
        out.append((label, run.id))
    return out


def refresh_runs(store: RunStore, current: str | None = None):
    choices = analysable_runs(store)
    ids = [v for _, v in choices]
    value = current if current in ids else (ids[0] if ids else None)
    return gr.update(choices=choices, value=value)


def _analysis(store: RunStore, run_id: str | None):
    if not run_id:
        raise LRCError("pick a run first (a finished distillation run with a saved student)")
    return get_run_analysis(open_run(store, run_id).path)


def pair_choices(store: RunStore, run_id: str | None) -> tuple[list[tuple[str, str]], str | None]:
    """Layer pairs for the 2-D map: the mapped pairs first, then every other (teacher, student) pair."""
    if not run_id:
        return [], None
    shape = _analysis(store, run_id).shape()
    mapped = [(n, m) for m, n in enumerate(shape["layer_map"], start=1)]
    pairs = [(f"T{n} ↔ S{m} (mapped)", f"{n},{m}") for n, m in mapped]
    for n in range(shape["teacher_layers"] + 1):
        for m in range(shape["student_layers"] + 1):
            if (n, m) not in mapped:
                pairs.append((f"T{n} ↔ S{m}", f"{n},{m}"))
    if not pairs:
        return [], None
    default = pairs[len(mapped) - 1][1] if mapped else pairs[-1][1]  # the deepest mapped pair
    return pairs, default


# ---- the views -------------------------------------------------------------------------------------------------

def _timing(name: str, result: dict[str, Any]) -> str:
    rows = result.get("num_rows")
    extra = f" ({rows:,} token rows)" if rows and result.get("representation") == "tokens" else ""
    took = f"{result['seconds']:.2f} s"
    if result.get("cached"):
        took = f"cached (first computed in {took}; now {result.get('lookup_seconds', 0) * 1000:.0f} ms)"
    return f"**{name}**: {result['num_examples']} examples{extra} · {took}"


def _error_outputs(message: str, count: int) -> list[Any]:
    return [lf.empty_figure(message) for _ in range(count)]


def _progress_bar(progress: Any) -> Callable[[float, str], None] | None:
    """lrc's progress(fraction, description) drawn by gradio's gr.Progress (None outside an event)."""
    if progress is None:
        return None
    return lambda fraction, description: progress(fraction, desc=description)


def compute_views(store: RunStore, run_id: str | None, variant: str, representation: str, n: int,
                  value: str = "cos_own", progress: Any = None) -> tuple[Any, Any, Any, str]:
    """Angular-similarity heatmap, CKA heatmap, mapped-pair bars and a status line. progress: a gr.Progress."""
    try:
        analysis = _analysis(store, run_id)
        warm_up_umap()  # numba's one-time compile overlaps the model loading below (no-op after the first)
        n = int(n or DEFAULT_EXAMPLES)
        bar = _progress_bar(progress)
        sim = analysis.similarity(variant, representation, n, progress=bar)
        cka = analysis.cka(variant, representation, n, progress=bar)
        who = "initial (untrained) student" if variant == "initial" else "trained student"
        figs = (
            lf.similarity_heatmap(sim, value, title=f"Angular similarity ({representation}, {who}): "
                                                      f"{lf.VALUE_TITLES.get(value, value)}"),
            lf.cka_heatmap(cka, title=f"Linear CKA ({representation}, {who})"),
            lf.mapped_bars(sim["mapped"], title=f"Mapped layers, {who}: cosine to own vs to negatives"),
        )
        acc = analysis.accuracy(variant, representation, n)
        acc_text = ""
        if acc:
            acc_text = (f" · accuracy on this sample: teacher {acc['teacher']:.3f}, "
                        f"student {acc[variant]:.3f}")
        info = " · ".join([_timing("Angular similarity", sim), _timing("CKA", cka)]) + acc_text
        return (*figs, info)
    except LRCError as exc:
        return (*_error_outputs(str(exc), 3), f"⚠️ {exc}")


def redraw_heatmap(store: RunStore, run_id: str | None, variant: str, representation: str, n: int,
                   value: str) -> Any:
    """Only the heatmap's value changed: served from the cache (computed if it is not there yet)."""
    return compute_views(store, run_id, variant, representation, n, value)[0]


def compute_scatter(store: RunStore, run_id: str | None, variant: str, representation: str, n: int,
                    pair: str | None, method: str = "umap", lines: bool = True, progress: Any = None
                    ) -> tuple[Any, str]:
    try:
        analysis = _analysis(store, run_id)
        if not pair:
            raise LRCError("pick a layer pair")
        t_layer, s_layer = (int(x) for x in str(pair).split(","))
        sc = analysis.scatter(t_layer, s_layer, variant, representation, int(n or DEFAULT_EXAMPLES), method,
                              progress=_progress_bar(progress))
        fig = lf.scatter_figure(sc, lines=bool(lines))
        note = ""
        if sc["method"] != sc["requested_method"]:
            note = f" · {sc['requested_method'].upper()} needs more points; used {sc['method'].upper()}"
        proj = sc.get("projection_source") or "none (widths differ)"
        info = (_timing(f"{sc['method'].upper()} map", sc) + f" (map fit {sc['fit_seconds']:.2f} s; "
                f"student projection {proj}){note}")
        return fig, info
    except LRCError as exc:
        return lf.empty_figure(str(exc)), f"⚠️ {exc}"


def snapshot_views(store: RunStore, run_id: str | None) -> tuple[Any, Any, str]:
    try:
        analysis = _analysis(store, run_id)
        snaps, stage2 = analysis.snapshots(), analysis.stage2_step()
    except LRCError as exc:
        return lf.empty_figure(str(exc)), lf.empty_figure(str(exc)), f"⚠️ {exc}"
    if not snaps:
        return lf.snapshot_bars([]), lf.snapshot_lines([]), \
            "No snapshots: train with `--snapshot-every N` (config `snapshot_every`) to record them."
    info = (f"**Snapshots**: {len(snaps)} (steps {snaps[0]['step']}–{snaps[-1]['step']}), matched layers on the "
            f"fixed probe set; drag the slider under the bars to step through training.")
    return lf.snapshot_bars(snaps), lf.snapshot_lines(snaps, stage2), info


def on_run_change(store: RunStore, run_id: str | None, n: int | None = None):
    """A new run: fresh pair choices, its snapshots, and the examples slider capped at its dev set's size (the
    heavy views follow in a chained event)."""
    try:
        choices, default = pair_choices(store, run_id)
    except LRCError:
        choices, default = [], None
    bars, lines, info = snapshot_views(store, run_id)
    return gr.update(choices=choices, value=default), bars, lines, info, examples_slider(store, run_id, n)


def examples_slider(store: RunStore, run_id: str | None, n: int | None) -> Any:
    """The slider's top is the run's dev-set size (up to MAX_EXAMPLES), so it offers no count the views cannot
    use; a value above the new top comes down to it."""
    try:
        dev = _analysis(store, run_id).dev_size()
    except LRCError:
        return gr.update(maximum=MAX_EXAMPLES)
    top = max(2 * MIN_EXAMPLES, min(MAX_EXAMPLES, dev))  # a slider's top must stay above its minimum
    value = min(int(n or DEFAULT_EXAMPLES), top)
    return gr.update(maximum=top, value=value,
                     info=f"this run's dev set has {dev:,} examples · {MEMORY_NOTE}")


# ---- layout ----------------------------------------------------------------------------------------------------

@dataclass
class LayersHandles:
    """Opening the tab should refresh its run list: the app wires `refresh` to the tab's select event."""

    run: gr.Dropdown
    refresh: Callable[[str | None], Any]


def build(store: RunStore, cache_mb: int | None = None) -> LayersHandles:
    """Fill the Layers tab (inside `with gr.Tab(...)`). cache_mb: the operator's budget for the layer vectors kept
    per run, all sample sizes together (LRC_LAYERS_CACHE_MB; None: lrc's default)."""
    set_cache_budget(None if cache_mb is None else cache_mb * 2**20)
    runs = analysable_runs(store)
    gr.Markdown(INTRO)
    with gr.Row():
        # no run preselected: picking one (or opening the tab, which selects the newest) starts the views, so
        # an app that never shows this tab never loads a model for it
        run = gr.Dropdown(runs, value=None, label="Run", scale=4, elem_id="layers-run",
                          info="a distillation run with a saved student; opening this tab picks the newest")
        refresh = gr.Button("↻ Refresh runs", scale=0, min_width=120)
        variant = gr.Radio(VARIANTS, value="trained", label="Student", scale=3, elem_id="layers-variant")
    with gr.Row():
        representation = gr.Radio(list(REPRESENTATIONS), value="tokens", label="Representation", scale=2,
                                  info="cls: [CLS] vector · mean: masked mean · tokens: every real token")
        examples = gr.Slider(MIN_EXAMPLES, MAX_EXAMPLES, value=DEFAULT_EXAMPLES, step=16, label="Dev examples", scale=2,
                             elem_id="layers-examples", info=MEMORY_NOTE)
        value = gr.Radio(HEATMAP_VALUES, value="cos_own", label="Heatmap shows", scale=3)
        compute = gr.Button("Compute", variant="primary", scale=0, min_width=120, elem_id="layers-compute")
    info = gr.Markdown(elem_id="layers-info")
    with gr.Row():
        sim_plot = gr.Plot(label="Angular similarity", elem_id="layers-similarity")
        cka_plot = gr.Plot(label="Linear CKA", elem_id="layers-cka")
    bars_plot = gr.Plot(label="Mapped layers", elem_id="layers-bars")

    gr.Markdown("### Teacher and student in one picture")
    with gr.Row():
        pair = gr.Dropdown([], label="Layer pair (the map is fitted on the teacher layer)", scale=3,
                           elem_id="layers-pair")
        method = gr.Radio(METHODS, value="umap", label="Map", scale=2)
        lines = gr.Checkbox(True, label="Join each example's teacher and student points", scale=2)
        draw = gr.Button("Draw map", scale=0, min_width=120, elem_id="layers-draw")
    scatter_info = gr.Markdown(elem_id="layers-scatter-info")
    scatter_plot = gr.Plot(label="2-D map", elem_id="layers-scatter")

    gr.Markdown("### During training")
    snap_info = gr.Markdown(elem_id="layers-snap-info")
    with gr.Row():
        snap_bars = gr.Plot(label="Snapshot", elem_id="layers-snapshots")
        snap_lines = gr.Plot(label="Evolution", elem_id="layers-evolution")

    view_inputs = [run, variant, representation, examples, value]
    scatter_inputs = [run, variant, representation, examples, pair, method, lines]

    # gradio hands each call its own gr.Progress (a progress bar over the outputs) through the default value
    def _views(run_id, variant, representation, n, value, progress=gr.Progress()):
        return compute_views(store, run_id, variant, representation, n, value, progress)

    def _scatter(run_id, variant, representation, n, pair, method, lines, progress=gr.Progress()):
        return compute_scatter(store, run_id, variant, representation, n, pair, method, lines, progress)

    def _run_change(run_id, n):
        return on_run_change(store, run_id, n)

    def _refresh(current):
        return refresh_runs(store, current)

    def _heatmap(*args):
        return redraw_heatmap(store, *args)

    views_out = [sim_plot, cka_plot, bars_plot, info]
    scatter_out = [scatter_plot, scatter_info]
    private = {"api_visibility": "private"}  # internal wiring, not API endpoints (the tab's work is in lrc.analysis)
    run_evt = run.change(_run_change, [run, examples], [pair, snap_bars, snap_lines, snap_info, examples], **private)
    run_evt.then(_views, view_inputs, views_out, **private).then(_scatter, scatter_inputs, scatter_out, **private)
    for trigger in (variant.change, representation.change, examples.release, compute.click):
        trigger(_views, view_inputs, views_out, **private).then(_scatter, scatter_inputs, scatter_out, **private)
    value.change(_heatmap, view_inputs, [sim_plot], **private)
    for trigger in (draw.click, pair.input, method.change, lines.change):
        trigger(_scatter, scatter_inputs, scatter_out, **private)
    refresh.click(_refresh, [run], [run], **private)
    return LayersHandles(run=run, refresh=_refresh)
