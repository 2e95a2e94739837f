"""Screenshots of each tab of the real app, for the README: `python -m tools.screenshots --data-dir ../shared/glue`.

Starts `python app.py` on a free port with a fresh run store, distils an LRC student by clicking Distill (the
Distill tab is shot while the curve streams), trains a plain-KD baseline through the API for the Runs tab's
comparison, predicts in the Predict tab, and opens the Layers tab. Needs Debian's chromium and a few minutes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from .testing import AppProcess

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def _select(page, elem_id: str, value: str) -> None:
    """Pick a dropdown value by typing it and pressing Enter (what a user does)."""
    box = page.locator(f"#{elem_id} input")
    box.click()
    box.fill(value)
    page.wait_for_timeout(300)
    box.press("Enter")
    page.wait_for_timeout(300)


def _points(page) -> int:
    return page.evaluate("""() => {
      const gd = document.querySelector('#lrc-loss-plot .js-plotly-plot');
      const t = gd && gd.data ? gd.data.find(t => t.name === 'total') : null;
      return t ? t.x.length : 0; }""")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tools.screenshots", description=__doc__.splitlines()[0])
    p.add_argument("--out", default="docs/img")
    p.add_argument("--data-dir", default=os.environ.get("GLUE_DIR", "../shared/glue"))
    p.add_argument("--runs-dir", default=None, help="run store to use (default: a fresh temp folder)")
    p.add_argument("--train-examples", type=int, default=1000)
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = p.parse_args(argv)

    from gradio_client import Client
    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = Path(args.runs_dir or tempfile.mkdtemp(prefix="lrc-shots-")) / "runs"
    with AppProcess(runs, data_dir=args.data_dir, preset="quick-cpu") as app, sync_playwright() as pw:
        print("app at", app.url, "runs in", runs)
        browser = pw.chromium.launch(executable_path=args.chromium, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
        page.set_default_timeout(600_000)
        page.goto(app.url)
        page.wait_for_selector("#lrc-distill")
        page.get_by_text("Data and run").click()
        page.get_by_label("Max train examples").fill(str(args.train_examples))
        page.get_by_label("Max dev examples").fill("256")
        page.get_by_label("Log every").fill("2")
        page.get_by_label("Run name").fill("lrc-sst2-demo")
        page.click("#lrc-distill")
        page.wait_for_function("document.querySelector('#lrc-status').innerText.includes('stage')")
        while _points(page) < 8 and "completed" not in page.inner_text("#lrc-status").lower():
            time.sleep(1)
        page.get_by_text("Data and run").click()
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(500)
        page.screenshot(path=str(out / "app-distill.png"))
        print("distill tab shot; waiting for the run to finish")
        page.wait_for_function("document.querySelector('#lrc-status').innerText.toLowerCase().includes('completed')")

        client = Client(app.url, verbose=False)
        print("plain-KD baseline via the API")
        final = client.predict(task="sst2", preset="kd-baseline", run_name="kd-sst2-demo", api_name="/distill",
                               settings={"max_train_examples": args.train_examples, "max_eval_examples": 256,
                                         "log_every": 2})
        print("KD baseline:", final["status"], final["summary"].get("score"))

        page.get_by_role("tab", name="Runs").click()
        page.wait_for_function("document.querySelector('#lrc-runs-table').innerText.includes('kd-sst2-demo')")
        _select(page, "lrc-compare-pick", "lrc-sst2-demo")
        _select(page, "lrc-compare-pick", "kd-sst2-demo")
        page.get_by_role("button", name="Compare").click()
        page.wait_for_timeout(3000)
        page.screenshot(path=str(out / "app-runs.png"), full_page=True)

        page.get_by_role("tab", name="Predict").click()
        _select(page, "lrc-predict-run", "lrc-sst2-demo")
        page.fill("#lrc-text-a textarea", "a gorgeous, witty, seductive movie")
        page.click("#lrc-predict")
        page.wait_for_function("document.querySelector('#lrc-verdict').innerText.includes('latency')")
        page.get_by_text("Disagreements on the dev set").click()
        page.get_by_role("button", name="Find disagreements").click()
        page.wait_for_function("document.body.innerText.includes('agrees with the teacher')")
        page.wait_for_timeout(1000)
        page.screenshot(path=str(out / "app-predict.png"), full_page=True)

        page.get_by_role("tab", name="Layers").click()
        page.wait_for_timeout(2000)
        try:  # the tab computes its views on opening; shoot them drawn
            page.wait_for_function("!document.body.innerText.includes('processing')", timeout=240_000)
        except Exception:
            print("the Layers tab was still computing; shooting it as it is")
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out / "app-layers.png"), full_page=True)
        browser.close()
    print("screenshots in", out)


def experiment_shots(argv: list[str] | None = None) -> None:
    """`python -m tools.screenshots --experiment NAME --runs-dir DIR`: the Runs tab showing one experiment (table,
    plot) and its seed-0 runs' curves, for docs/RESULTS.md. Uses an existing run store; trains nothing."""
    p = argparse.ArgumentParser(prog="python -m tools.screenshots --experiment")
    p.add_argument("--experiment", required=True, action="append", help="experiment name (repeatable)")
    p.add_argument("--runs-dir", required=True)
    p.add_argument("--out", default="docs/img")
    p.add_argument("--term", default="hard", help="loss term for the curves: loss | cos_nce | soft | hard")
    p.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = p.parse_args(argv)

    from playwright.sync_api import sync_playwright

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with AppProcess(Path(args.runs_dir), preset="quick-cpu") as app, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=args.chromium, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
        page.set_default_timeout(120_000)
        page.goto(app.url)
        page.wait_for_selector("#lrc-distill")
        page.get_by_role("tab", name="Runs").click()
        for name in args.experiment:
            _select(page, "lrc-experiment-pick", name)
            page.wait_for_function(f"document.querySelector('#lrc-experiment-table').innerText.includes('teacher')")
            from .figures import TERM_NAMES

            page.get_by_label(TERM_NAMES.get(args.term, args.term), exact=True).check()
            page.get_by_role("button", name="Compare").click()
            page.wait_for_timeout(4000)
            page.locator("#lrc-experiment-plot").screenshot(path=str(out / f"{name}.png"))
            page.locator("#lrc-compare-plot").screenshot(path=str(out / f"{name}-curves.png"))
            print("shot", out / f"{name}.png", out / f"{name}-curves.png")
        browser.close()


if __name__ == "__main__":
    import sys

    if "--experiment" in sys.argv:
        experiment_shots()
    else:
        main()
