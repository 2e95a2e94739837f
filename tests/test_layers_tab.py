"""The Layers tab: its callbacks as plain functions, then headless Chromium picking a finished tiny run.

The browser part uses Debian's `chromium` (`/usr/bin/chromium`, or $CHROMIUM) through Playwright's Python
package; when the browser cannot start the test fails and says why, it never skips silently.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import plotly.graph_objects as go
import pytest

from studio.tabs import layers as tab
from lrc.analysis import clear_run_analyses

from test_analysis import make_tiny_run

SCREENSHOTS = os.environ.get("LRC_SCREENSHOTS")


@pytest.fixture(scope="module", autouse=True)
def no_umap_warm_up():
    """The tab compiles UMAP's numba code in a background thread on first use; the tiny runs here never reach
    UMAP (8 examples fall back to PCA), so that compile would only take CPU from the other tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tab, "warm_up_umap", lambda: None)
        yield


@pytest.fixture(scope="module")
def store_with_run(tmp_path_factory, tiny_teacher_dir, shared_glue_dir):
    clear_run_analyses()
    store, run, _events = make_tiny_run(tmp_path_factory.mktemp("layer-runs"), tiny_teacher_dir, shared_glue_dir)
    store.create({"task": "sst2"}, run_id="teacher-only", kind="teacher", exist_ok=True)  # no student: not listed
    yield store, run.id
    clear_run_analyses()


def _traces(fig: go.Figure, kind: str) -> list:
    return [t for t in fig.data if t.type == kind]


# ---- callbacks -------------------------------------------------------------------------------------------------

def test_run_choices_list_only_runs_with_a_student(store_with_run):
    store, run_id = store_with_run
    assert [v for _label, v in tab.analysable_runs(store)] == [run_id]
    update = tab.refresh_runs(store, None)
    assert update["value"] == run_id


def test_run_change_offers_mapped_pairs_first_and_draws_snapshots(store_with_run):
    store, run_id = store_with_run
    pairs, default = tab.pair_choices(store, run_id)
    assert pairs[:2] == [("T2 ↔ S1 (mapped)", "2,1"), ("T4 ↔ S2 (mapped)", "4,2")]
    assert default == "4,2" and len(pairs) == 5 * 3
    update, bars, lines, info, slider = tab.on_run_change(store, run_id, 256)
    assert update["value"] == "4,2"
    # the examples slider tops out at the dev set's size (8 here: so at 32, the least above its 16 minimum), and
    # its value comes down with it
    assert slider["maximum"] == 32 and slider["value"] == 32 and "dev set has 8 examples" in slider["info"]
    *_, no_run = tab.on_run_change(store, None, 256)
    assert no_run["maximum"] == tab.MAX_EXAMPLES and "value" not in no_run
    assert [s["label"] for s in bars.layout.sliders[0].steps] == ["0", "2", "4"]
    assert len(_traces(bars, "bar")) == 3 and len(_traces(lines, "scatter")) == 4
    assert "3 (steps 0–4)" in info


def test_views_render_say_their_size_and_time_and_come_back_cached(store_with_run):
    store, run_id = store_with_run
    sim, cka, bars, info = tab.compute_views(store, run_id, "trained", "mean", 8)
    heat = _traces(sim, "heatmap")[0]
    assert len(heat.z) == 5 and len(heat.z[0]) == 3  # teacher layers 0..4 x student layers 0..2
    assert list(heat.y) == ["T0 (emb)", "T1", "T2", "T3", "T4"]
    layer_map = [t for t in sim.data if t.name and "layer map" in t.name][0]
    assert list(layer_map.x) == ["S1", "S2"] and list(layer_map.y) == ["T2", "T4"]
    assert _traces(cka, "heatmap")[0].zmax == 1.0
    assert [t.name for t in _traces(bars, "bar")] == ["own teacher vector", "other examples (negatives)"]
    assert "8 examples" in info and " s" in info and "cached" not in info
    start = time.perf_counter()
    again = tab.compute_views(store, run_id, "trained", "mean", 8)
    assert time.perf_counter() - start < 1.0
    assert "cached" in again[3]
    margin = tab.redraw_heatmap(store, run_id, "trained", "mean", 8, "margin")
    assert _traces(margin, "heatmap")[0].zmid == 0.0


class _Bar:
    """Stands in for gr.Progress: records what the tab would draw."""

    def __init__(self):
        self.calls: list[tuple[float, str]] = []

    def __call__(self, fraction, desc=None):
        self.calls.append((fraction, desc))


def test_long_views_drive_a_progress_bar(store_with_run):
    store, run_id = store_with_run
    clear_run_analyses()
    bar = _Bar()
    tab.compute_views(store, run_id, "trained", "tokens", 8, progress=bar)
    descs = [d for _f, d in bar.calls]
    assert any(d.startswith("teacher, 8 examples: batch") for d in descs)
    assert any(d.startswith("trained student, 8 examples: batch") for d in descs)
    assert "linear CKA of every layer pair" in descs
    scatter_bar = _Bar()
    tab.compute_scatter(store, run_id, "trained", "tokens", 8, "4,2", "pca", True, progress=scatter_bar)
    assert [d for _f, d in scatter_bar.calls][0] == "fitting the PCA map on 8 teacher points"


def test_initial_student_and_tokens_views(store_with_run):
    store, run_id = store_with_run
    sim, _cka, _bars, info = tab.compute_views(store, run_id, "initial", "tokens", 8)
    assert "initial" in sim.layout.title.text and "token rows" in info


def test_scatter_with_and_without_lines(store_with_run):
    store, run_id = store_with_run
    fig, info = tab.compute_scatter(store, run_id, "trained", "cls", 8, "4,2", "pca", True)
    names = [t.name for t in fig.data]
    assert names[0] == "same example"
    assert {"teacher · negative", "teacher · positive", "student · negative", "student · positive"} <= set(names)
    points = sum(len(t.x) for t in fig.data if t.mode == "markers")
    assert points == 16  # 8 examples, teacher and student
    hover = [t for t in fig.data if t.name == "teacher · positive"][0]
    assert len(hover.customdata[0]) == 4  # text, gold, teacher prediction, student prediction
    assert "PCA map" in info and "8 examples" in info
    fig2, _ = tab.compute_scatter(store, run_id, "trained", "cls", 8, "4,2", "pca", False)
    assert "same example" not in [t.name for t in fig2.data]


def test_umap_request_on_a_tiny_sample_says_it_used_pca(store_with_run):
    store, run_id = store_with_run
    _fig, info = tab.compute_scatter(store, run_id, "trained", "cls", 8, "2,1", "umap", True)
    assert "used PCA" in info


def test_errors_become_messages_not_exceptions(store_with_run):
    store, _run_id = store_with_run
    *figs, info = tab.compute_views(store, None, "trained", "cls", 8)
    assert info.startswith("⚠️") and "pick a run" in info and len(figs) == 3
    _fig, info = tab.compute_scatter(store, "no-such-run", "trained", "cls", 8, "1,1", "pca", True)
    assert info.startswith("⚠️") and "no run" in info
    _b, _l, info = tab.snapshot_views(store, "teacher-only")
    assert info.startswith("⚠️") and "teacher run" in info


# ---- the browser ---------------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def layers_app(store_with_run):
    import gradio as gr

    store, run_id = store_with_run
    with gr.Blocks() as demo:
        with gr.Tab("Layers"):
            tab.build(store)
    port = _free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True,
                        show_error=True)
    try:
        yield f"http://127.0.0.1:{port}/", run_id
    finally:
        demo.close()


def _plot_js(elem_id: str, kind: str) -> str:
    """How many traces of a kind the plotly figure inside a gr.Plot has drawn (-1: no plot yet)."""
    return (f"(() => {{ const gd = document.querySelector('#{elem_id} .js-plotly-plot'); "
            f"if (!gd || !gd.data) return -1; return gd.data.filter(t => t.type === '{kind}').length; }})()")


@pytest.mark.browser
def test_layers_tab_renders_its_plots_for_a_finished_run(browser, layers_app):
    url, run_id = layers_app
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.set_default_timeout(45_000)
    page.goto(url)
    page.wait_for_selector("#layers-run")
    # pick the run the way a user does: open the dropdown and click it
    page.click("#layers-run input")
    page.get_by_role("option", name=run_id).first.click()
    page.wait_for_function(_plot_js("layers-similarity", "heatmap") + " === 1")
    page.wait_for_function(_plot_js("layers-cka", "heatmap") + " === 1")
    page.wait_for_function(_plot_js("layers-bars", "bar") + " === 2")
    page.wait_for_function(_plot_js("layers-snapshots", "bar") + " === 3")
    page.wait_for_function(_plot_js("layers-scatter", "scatter") + " >= 3")
    # the examples slider came down to the run's 8-example dev set (32: the least above its 16 minimum)
    assert page.get_attribute("#layers-examples input[type=range]", "max") == "32"
    # plotly really drew them: heatmap cells and scatter points are in the DOM
    assert page.locator("#layers-similarity .heatmaplayer image, #layers-similarity .hm").count() >= 1
    assert page.locator("#layers-scatter .scatterlayer .point").count() >= 16
    assert page.locator("#layers-snapshots .slider-container").count() == 1
    info = page.inner_text("#layers-info")
    assert "8 examples" in info and "CKA" in info
    assert "examples" in page.inner_text("#layers-scatter-info")
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / "layers-tab.png"), full_page=True)
    page.close()
