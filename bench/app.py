"""The app's responsiveness on CPU: time to the first loss point, Predict round trips, Layers view times.

    python bench/app.py --data-dir ../shared/glue            # 1 torch thread (the default; --threads 0: torch's own)

1. **First loss point.** `python app.py` runs on loopback with a temporary run store and is driven with
   gradio_client exactly as the README shows (`/distill`, preset quick-cpu, the default teacher). A warm-up run
   goes first: it fine-tunes and caches the default teacher (the bundled MiniLM) and pays the app's imports;
   each measured run is then timed from the `/distill` call to the first streamed state that carries a loss
   (what the Distill tab draws as its first point), and stopped there with `/stop`. A thread watching the run's
   events.jsonl gives the server-side times: when the `teacher_ready`, `start` and first `step` events were
   written.
2. **Predict.** `/predict` round trips through gradio_client on a run the first part made (its student and the
   cached teacher), on SST-2 dev sentences: p50/p95 of the round trip and of the two models' own forward time.
   Each call alternates with the same request sent as plain HTTP to gradio's REST API (what a client costs
   without gradio_client, whose result loop polls every 50 ms). Then, with the app closed, the parts: the
   Predict callback called in this process (no HTTP), and a trivial echo endpoint's round trip through gradio +
   gradio_client (the framework's floor on this machine).
3. **Predict in a browser.** The same sentences typed into the Predict tab of headless Chromium (Debian's
   package, through Playwright), the button clicked, timed in the page until the verdict shows the new answer:
   the round trip through gradio's JavaScript client that a user sees (the browser shares this machine's cores).
4. **Layers.** What the Layers tab computes (lrc.analysis.RunAnalysis: angular similarity, CKA, accuracy, the
   UMAP and PCA maps of the deepest mapped pair, and the plotly figures of studio.layer_figures), in this process,
   for 1,000 and 4,000 examples in `tokens` mode (the tab's default). SST-2's dev set has 872, so the sample is
   drawn from the train split's phrases of 12+ words (mean 19.6 words, dev's mean is 19.5), written as the dev
   split of a temporary GLUE folder. numba's one-time compile (the first UMAP of a process) is timed on its own.

The app process gets the same thread limit (OMP_NUM_THREADS, NUMBA_NUM_THREADS). Prints tables and one JSON line.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench.common import prepare_environment  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))]


class EventWatcher(threading.Thread):
    """Polls a run's events.jsonl every 10 ms; remembers when each event type first appeared (perf_counter)."""

    def __init__(self, path: Path):
        super().__init__(daemon=True)
        self.path, self.first = path, {}
        self.done = threading.Event()

    def run(self) -> None:
        offset = 0
        while not self.done.is_set():
            try:
                with open(self.path, encoding="utf-8") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
            except FileNotFoundError:
                chunk = ""
            now = time.perf_counter()
            if chunk:
                complete = chunk[: chunk.rfind("\n") + 1]
                offset += len(complete.encode("utf-8"))
                for line in complete.splitlines():
                    try:
                        event = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    if "phase" not in event:  # the default teacher's own fine-tuning events carry a phase
                        self.first.setdefault(event.get("type"), now)
            time.sleep(0.01)


def first_loss_point(client, runs_dir: Path, name: str, settings: dict, timeout: float) -> dict:
    """Press Distill through the API, wait for the first state with a loss, stop the run; times in seconds."""
    watcher = EventWatcher(runs_dir / name / "events.jsonl")
    watcher.start()
    t0 = time.perf_counter()
    job = client.submit(task="sst2", preset="quick-cpu", settings=settings, run_name=name, api_name="/distill")
    seen_running = None
    first_state = None
    deadline = t0 + timeout
    while time.perf_counter() < deadline:
        outputs = job.outputs()
        if outputs:
            state = outputs[-1]
            if seen_running is None:
                seen_running = time.perf_counter()
            if state.get("losses") and (state.get("step") or 0) >= 1:
                first_state = state
                break
            if state.get("done"):
                raise RuntimeError(f"run {name} ended before its first loss point: {state.get('message')}")
        time.sleep(0.01)
    t_client = time.perf_counter()
    if first_state is None:
        raise RuntimeError(f"no loss point within {timeout:.0f} s")
    client.predict(name, api_name="/stop")
    final = job.result(timeout=300)
    watcher.done.set()
    watcher.join()
    ev = {k: v - t0 for k, v in watcher.first.items()}
    return {
        "run": name, "first_loss_on_client_s": t_client - t0, "first_state_s": (seen_running or t_client) - t0,
        "server_teacher_ready_s": ev.get("teacher_ready"), "server_start_s": ev.get("start"),
        "server_first_step_s": ev.get("step"), "client_lag_after_server_s": t_client - t0 - ev["step"]
        if "step" in ev else None, "final_status": final.get("status"), "first_losses": first_state.get("losses"),
    }


def predict_round_trips(client, url: str, run_id: str, texts: list[str], warmup: int) -> dict:
    """/predict through gradio_client, alternating call by call with the same request as plain HTTP (gradio's
    REST API: POST /gradio_api/call/predict, then read the event stream until `complete`), so noise hits both."""
    import httpx

    rt, http_rt, model_ms, teacher_ms, student_ms = [], [], [], [], []
    first_s = None
    with httpx.Client(timeout=60) as http:
        for i, text in enumerate(texts):
            start = time.perf_counter()
            _teacher, _student, _verdict, raw = client.predict(run_id, text, "", api_name="/predict")
            took = time.perf_counter() - start
            start = time.perf_counter()
            posted = http.post(url + "gradio_api/call/predict", json={"data": [run_id, text, ""]})
            posted.raise_for_status()
            body = http.get(url + f"gradio_api/call/predict/{posted.json()['event_id']}").text
            http_took = time.perf_counter() - start
            if "event: complete" not in body:
                raise RuntimeError(f"/predict over HTTP did not complete: {body[:300]}")
            if i == 0:
                first_s = took
            if i < warmup:
                continue
            rt.append(took * 1000)
            http_rt.append(http_took * 1000)
            teacher_ms.append(raw["teacher"]["latency_ms"])
            student_ms.append(raw["student"]["latency_ms"])
            model_ms.append(raw["teacher"]["latency_ms"] + raw["student"]["latency_ms"])
    return {
        "calls": len(rt), "first_call_s": first_s, "round_trip_p50_ms": statistics.median(rt),
        "round_trip_p95_ms": percentile(rt, 95), "round_trip_max_ms": max(rt),
        "http_round_trip_p50_ms": statistics.median(http_rt), "http_round_trip_p95_ms": percentile(http_rt, 95),
        "models_p50_ms": statistics.median(model_ms), "teacher_p50_ms": statistics.median(teacher_ms),
        "student_p50_ms": statistics.median(student_ms),
        "overhead_p50_ms": statistics.median([a - b for a, b in zip(rt, model_ms)]),
    }


_CLICK_AND_WAIT = """async () => {
  // done when the verdict's markdown shows a new text and gradio's status tracker (the "processing" overlay,
  // which also changes the element's text) is hidden again
  const verdict = document.querySelector('#lrc-verdict');
  const text = () => { const m = verdict.querySelector('[data-testid="markdown"]'); return m ? m.innerText : ''; };
  const idle = () => { const t = verdict.querySelector('[data-testid="status-tracker"]');
                       return !t || t.classList.contains('hide'); };
  const old = text();
  const start = performance.now();
  const done = new Promise((resolve) => {
    const seen = new MutationObserver(() => {
      if (idle() && text() !== old && text().includes('latency')) { seen.disconnect(); resolve(performance.now() - start); }
    });
    seen.observe(verdict, {subtree: true, childList: true, characterData: true, attributes: true});
  });
  document.querySelector('#lrc-predict').click();
  return await done;
}"""


def browser_round_trips(url: str, run_id: str, texts: list[str], warmup: int, chromium: str) -> dict:
    """Predict in headless Chromium, as a user does it: the sentence typed, the button clicked, timed in the page
    (performance.now) until the verdict shows the new answer. This goes through gradio's JavaScript client."""
    from playwright.sync_api import sync_playwright

    took: list[float] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(url)
        page.wait_for_selector("#lrc-distill")
        page.get_by_role("tab", name="Predict").click()
        box = page.locator("#lrc-predict-run input")
        box.click()
        box.fill(run_id)
        box.press("Enter")
        page.wait_for_timeout(500)
        for i, text in enumerate(texts):
            page.fill("#lrc-text-a textarea", text)
            ms = page.evaluate(_CLICK_AND_WAIT)
            if i >= warmup:
                took.append(ms)
        browser.close()
    return {"calls": len(took), "p50_ms": statistics.median(took), "p95_ms": percentile(took, 95),
            "max_ms": max(took)}


def gradio_floor(texts: list[str], warmup: int) -> dict:
    """Round trips of a trivial echo endpoint (gr.Blocks, queue on, launched here on loopback): what gradio and
    gradio_client cost on this machine before the app does any work."""
    import gradio as gr
    from gradio_client import Client

    with gr.Blocks() as demo:
        box, out = gr.Textbox(), gr.Textbox()
        gr.Button().click(lambda text: text, box, out, api_name="echo")
    demo.queue()
    from tools.apptest import free_port

    _app, url, _share = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                                    quiet=True)
    try:
        client = Client(url, verbose=False)
        rt = []
        for i, text in enumerate(texts):
            start = time.perf_counter()
            client.predict(text, api_name="/echo")
            if i >= warmup:
                rt.append((time.perf_counter() - start) * 1000)
    finally:
        demo.close()
    return {"calls": len(rt), "round_trip_p50_ms": statistics.median(rt), "round_trip_p95_ms": percentile(rt, 95)}


def predict_in_process(runs_dir: Path, run_id: str, texts: list[str], warmup: int) -> dict:
    """The Predict callback's own work (studio.ui.Studio.predict: both models, tokenization, the verdict markdown),
    called here without HTTP, on a fresh model cache."""
    from studio.state import AppContext, AppSettings
    from studio.ui import Studio

    studio = Studio(AppContext.create(AppSettings(runs_dir=str(runs_dir))))
    took = []
    for i, text in enumerate(texts):
        start = time.perf_counter()
        studio.predict(run_id, text, "")
        if i >= warmup:
            took.append((time.perf_counter() - start) * 1000)
    return {"calls": len(took), "p50_ms": statistics.median(took), "p95_ms": percentile(took, 95)}


def read_sentences(path: Path) -> list[tuple[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [(r[0], r[1]) for r in rows[1:] if len(r) >= 2]


def layer_glue(data_dir: Path, n: int, min_words: int, seed: int = 0) -> Path:
    """A GLUE folder whose SST-2 dev split is n train phrases of min_words+ words (the real dev has 872)."""
    rows = [r for r in read_sentences(data_dir / "SST-2" / "train.tsv") if len(r[0].split()) >= min_words]
    random.Random(seed).shuffle(rows)
    folder = Path(tempfile.mkdtemp(prefix="bench-layers-glue-"))
    (folder / "SST-2").mkdir()
    body = "sentence\tlabel\n" + "".join(f"{a}\t{b}\n" for a, b in rows[:n])
    (folder / "SST-2" / "dev.tsv").write_text(body, encoding="utf-8")
    (folder / "SST-2" / "train.tsv").write_text(body, encoding="utf-8")
    return folder


def _self_kib(field: str) -> int:
    """VmRSS (now) or VmHWM (the kernel's peak) of this process, from /proc."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _reset_peak() -> None:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def layers_views(run_path: Path, glue: Path, sizes: list[int], representation: str, cache_mb: int | None) -> dict:
    """Time what the Layers tab computes for each sample size (a fresh RunAnalysis: nothing cached), with the
    app's cache budget, and the memory the process holds after each."""
    from studio import layer_figures as lf
    from lrc.analysis import DEFAULT_CACHE_MB, RunAnalysis, warm_up_umap

    cache_mb = DEFAULT_CACHE_MB if cache_mb is None else cache_mb

    out: dict = {}
    start = time.perf_counter()
    warm_up_umap(background=False)
    out["umap_numba_compile_s"] = time.perf_counter() - start
    analysis = RunAnalysis(run_path, data_dir=str(glue), max_cache_bytes=cache_mb * 2**20)
    out["cache_budget_mib"] = cache_mb
    start = time.perf_counter()
    analysis.models  # noqa: B018 - teacher + tokenizer
    analysis.student("trained")
    out["load_models_s"] = time.perf_counter() - start
    pair = analysis.layer_map[-1], len(analysis.layer_map)  # the deepest mapped pair, the tab's default
    out["pair"] = {"teacher_layer": pair[0], "student_layer": pair[1]}
    out["sizes"] = []
    for n in sizes:
        _reset_peak()  # so each size's peak is its own, not an earlier size's
        row: dict = {"examples": n}
        t = time.perf_counter()
        teacher = analysis.representations("teacher", representation, n)
        row["teacher_forward_s"] = time.perf_counter() - t
        t = time.perf_counter()
        analysis.representations("trained", representation, n)
        row["student_forward_s"] = time.perf_counter() - t
        row["token_rows"] = int(teacher.row_example.shape[0])
        row["examples_used"] = teacher.num_examples
        sim = analysis.similarity("trained", representation, n)
        row["similarity_s"] = sim["seconds"]
        cka = analysis.cka("trained", representation, n)
        row["cka_s"] = cka["seconds"]
        t = time.perf_counter()
        analysis.accuracy("trained", representation, n)
        lf.similarity_heatmap(sim, "cos_own")
        lf.cka_heatmap(cka)
        lf.mapped_bars(sim["mapped"])
        row["accuracy_and_figures_s"] = time.perf_counter() - t
        umap = analysis.scatter(pair[0], pair[1], "trained", representation, n, "umap")
        t = time.perf_counter()
        lf.scatter_figure(umap)
        row["umap_figure_s"] = time.perf_counter() - t
        row["umap_s"] = umap["seconds"]
        row["umap_method_used"] = umap["method"]
        row["pca_s"] = analysis.scatter(pair[0], pair[1], "trained", representation, n, "pca")["seconds"]
        row["heatmaps_total_s"] = (row["teacher_forward_s"] + row["student_forward_s"] + row["similarity_s"]
                                   + row["cka_s"] + row["accuracy_and_figures_s"])
        row["tab_total_s"] = row["heatmaps_total_s"] + row["umap_s"] + row["umap_figure_s"]
        row["cache_mib"] = analysis.cache_bytes() / 2**20  # layer vectors kept after this size (the budget's share)
        row["rss_gib"] = _self_kib("VmRSS") / 2**20
        row["peak_rss_gib"] = _self_kib("VmHWM") / 2**20
        out["sizes"].append(row)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("GLUE_DIR"))
    p.add_argument("--runs", type=int, default=3, help="measured Distill presses (after one warm-up run)")
    p.add_argument("--predict-calls", type=int, default=40)
    p.add_argument("--predict-warmup", type=int, default=3)
    p.add_argument("--layers-sizes", default="1000,4000")
    p.add_argument("--representation", default="tokens")
    p.add_argument("--cache-mb", type=int, default=None,
                   help="the Layers cache budget (the app's LRC_LAYERS_CACHE_MB; default: lrc's DEFAULT_CACHE_MB)")
    p.add_argument("--threads", type=int, default=1, help="torch/numba threads here and in the app (0: default)")
    p.add_argument("--skip", default="", help="comma-separated parts to skip: first,predict,browser,layers")
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium",
                   help="the browser for the browser part (Debian's chromium)")
    p.add_argument("--keep", default=None, help="use (and keep) this folder for the run store")
    args = p.parse_args()
    data_dir = prepare_environment(p, args)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    import gradio
    import gradio_client
    import transformers
    from gradio_client import Client

    from tools.apptest import AppProcess

    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-app-"))
    runs_dir = work / "runs"
    result: dict = {"bench": "app"}
    load_before = os.getloadavg()
    run_ids: list[str] = []
    if not {"first", "predict", "browser"} <= skip:
        with AppProcess(runs_dir, data_dir=data_dir, log_path=work / "app.log", startup_timeout=180) as app:
            client = Client(app.url, verbose=False)
            first = []
            start = time.perf_counter()
            warm = first_loss_point(client, runs_dir, "bench-warmup", {}, timeout=900)
            warm["wall_s"] = time.perf_counter() - start
            run_ids.append("bench-warmup")
            result["warmup_run"] = warm
            if "first" not in skip:
                for i in range(args.runs):
                    first.append(first_loss_point(client, runs_dir, f"bench-first-{i}", {}, timeout=300))
                    run_ids.append(f"bench-first-{i}")
                result["first_loss_point"] = {
                    "runs": first,
                    "median_s": statistics.median(r["first_loss_on_client_s"] for r in first),
                    "median_server_start_s": statistics.median(r["server_start_s"] for r in first),
                    "median_server_first_step_s": statistics.median(r["server_first_step_s"] for r in first),
                }
            # the SST-2 dev sentences that Predict is timed on, through gradio_client and in the browser
            texts = [a for a, _b in read_sentences(data_dir / "SST-2" / "dev.tsv")]
            texts = texts[: args.predict_calls + args.predict_warmup]
            if "predict" not in skip:
                result["predict"] = predict_round_trips(client, app.url, run_ids[-1], texts, args.predict_warmup)
                result["predict"]["run"] = run_ids[-1]
            if "browser" not in skip:  # the same sentences through the Predict tab in headless Chromium
                result["browser_predict"] = browser_round_trips(app.url, run_ids[-1], texts, args.predict_warmup,
                                                                args.chromium)
        if "predict" not in skip:  # the parts of a round trip, measured with the app closed
            result["predict"]["callback_in_process"] = predict_in_process(runs_dir, run_ids[-1], texts,
                                                                          args.predict_warmup)
            result["predict"]["gradio_echo_floor"] = gradio_floor(texts, args.predict_warmup)
    if "layers" not in skip:
        if not run_ids:
            candidates = sorted(runs_dir.glob("bench-*/student/config.json")) if runs_dir.exists() else []
            if not candidates:
                raise SystemExit("the layers part needs a run: do not skip 'first'/'predict', or pass --keep DIR")
            run_ids.append(candidates[-1].parent.parent.name)
        sizes = [int(x) for x in args.layers_sizes.split(",") if x.strip()]
        glue = layer_glue(data_dir, max(sizes), min_words=12)
        import resource

        result["layers"] = layers_views(runs_dir / run_ids[-1], glue, sizes, args.representation, args.cache_mb)
        result["layers"]["bench_process_peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        result["layers"]["run"] = run_ids[-1]
        result["layers"]["representation"] = args.representation

    result.update({
        "device": f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
        "threads": torch.get_num_threads(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "torch": torch.__version__, "transformers": transformers.__version__, "gradio": gradio.__version__,
        "gradio_client": gradio_client.__version__, "command": "python " + " ".join(sys.argv),
        "run_store": str(runs_dir),
    })
    print(f"{result['device']}, {result['threads']} torch thread(s) here and in the app; load average "
          f"{load_before[0]:.2f} before, {result['loadavg_after'][0]:.2f} after; torch {torch.__version__}, "
          f"gradio {gradio.__version__}")
    if "warmup_run" in result:
        w = result["warmup_run"]
        print(f"\nwarm-up run (fine-tunes and caches the teacher, first imports): first loss point after "
              f"{w['first_loss_on_client_s']:.1f} s")
    if "first_loss_point" in result:
        print("\nDistill -> first loss point (s)   client sees it   server: teacher_ready   start   first step")
        for r in result["first_loss_point"]["runs"]:
            print(f"{r['run']:<34}{r['first_loss_on_client_s']:>15.2f}{r['server_teacher_ready_s'] or 0:>24.2f}"
                  f"{r['server_start_s']:>8.2f}{r['server_first_step_s']:>13.2f}")
        print(f"median {result['first_loss_point']['median_s']:.2f} s (target 3 s)")
    if "predict" in result:
        pr = result["predict"]
        print(f"\nPredict through gradio_client, {pr['calls']} calls: round trip p50 {pr['round_trip_p50_ms']:.1f} ms, "
              f"p95 {pr['round_trip_p95_ms']:.1f} ms (target p50 < 100 ms); the two models' forward p50 "
              f"{pr['models_p50_ms']:.1f} ms (teacher {pr['teacher_p50_ms']:.1f}, student "
              f"{pr['student_p50_ms']:.1f}); first call {pr['first_call_s']:.2f} s (loads both models)")
        print(f"  the same request as plain HTTP (gradio's REST API, no gradio_client): p50 "
              f"{pr['http_round_trip_p50_ms']:.1f} ms, p95 {pr['http_round_trip_p95_ms']:.1f} ms")
        cb, floor = pr["callback_in_process"], pr["gradio_echo_floor"]
        print(f"  the parts: the Predict callback in process p50 {cb['p50_ms']:.1f} ms (p95 {cb['p95_ms']:.1f}); "
              f"a trivial gradio echo endpoint's round trip p50 {floor['round_trip_p50_ms']:.1f} ms "
              f"(p95 {floor['round_trip_p95_ms']:.1f})")
    if "browser_predict" in result:
        br = result["browser_predict"]
        print(f"\nPredict in headless Chromium (typed, clicked, until the verdict changes; gradio's JS client), "
              f"{br['calls']} calls: p50 {br['p50_ms']:.1f} ms, p95 {br['p95_ms']:.1f} ms, max {br['max_ms']:.1f} ms")
    if "layers" in result:
        ly = result["layers"]
        print(f"\nLayers views ({ly['representation']}), numba compile (first UMAP of the process) "
              f"{ly['umap_numba_compile_s']:.1f} s, model load {ly['load_models_s']:.1f} s")
        print(f"{'examples':>9}{'token rows':>11}{'teacher fwd':>12}{'student fwd':>12}{'similarity':>11}{'CKA':>7}"
              f"{'figs':>6}{'UMAP':>7}{'PCA':>6}{'heatmaps':>10}{'whole tab':>10}{'kept MiB':>9}{'RSS GiB':>8}"
              f"{'peak GiB':>9}")
        for r in ly["sizes"]:
            print(f"{r['examples_used']:>9}{r['token_rows']:>11}{r['teacher_forward_s']:>12.1f}"
                  f"{r['student_forward_s']:>12.1f}{r['similarity_s']:>11.2f}{r['cka_s']:>7.1f}"
                  f"{r['accuracy_and_figures_s']:>6.2f}{r['umap_s']:>7.1f}{r['pca_s']:>6.2f}"
                  f"{r['heatmaps_total_s']:>10.1f}{r['tab_total_s']:>10.1f}{r['cache_mib']:>9.0f}"
                  f"{r['rss_gib']:>8.2f}{r['peak_rss_gib']:>9.2f}")
        print(f"(kept: the layer vectors the analysis holds after that size, budget {ly['cache_budget_mib']} MiB "
              "plus the size in use; RSS: after that size; peak: the process's peak while computing that size)")
        print(f"peak RSS of this process after the Layers part: {ly['bench_process_peak_rss_gib']:.2f} GiB")
    print(json.dumps(result))
    if not args.keep:  # the run store holds a teacher and four students (about 1 GB)
        shutil.rmtree(work, ignore_errors=True)
    if "layers" not in skip:
        shutil.rmtree(glue, ignore_errors=True)


if __name__ == "__main__":
    main()
