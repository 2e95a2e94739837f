"""Headless Chromium against `python app.py`: click Distill, watch the loss plot fill and the run finish, then
type a sentence in Predict and read both models' labels.

Uses Debian's `chromium` (`/usr/bin/chromium`, or $CHROMIUM) through Playwright's Python package. When the
browser cannot start, the test fails and says why: it never skips silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.apptest import AppProcess, make_tiny_teacher, write_preset, write_tiny_glue

pytestmark = pytest.mark.browser

SCREENSHOTS = os.environ.get("LRC_SCREENSHOTS")  # a folder: also save a screenshot of each step there


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("browser")
    teacher = make_tiny_teacher(tmp / "teacher")
    preset = write_preset(tmp / "tiny.yaml", epochs=4, student={"layers": 1})  # 16 steps
    with AppProcess(tmp / "runs", data_dir=write_tiny_glue(tmp / "glue"), preset=preset, teacher=teacher) as app:
        yield app.url


def shot(page, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


PLOT_POINTS = """() => {
  const gd = document.querySelector('#lrc-loss-plot .js-plotly-plot');
  if (!gd || !gd.data) return -1;
  const total = gd.data.find(t => t.name === 'total');
  return total ? total.x.length : 0;
}"""


def test_distill_watch_and_predict_in_the_browser(browser, app_url):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(app_url)
    page.wait_for_selector("#lrc-distill")
    page.wait_for_function(f"({PLOT_POINTS})() >= 0")  # the empty plot is drawn
    assert page.evaluate(PLOT_POINTS) == 0

    page.click("#lrc-distill")
    page.wait_for_function(f"({PLOT_POINTS})() > 0", timeout=120_000)  # the loss curve starts to stream
    first = page.evaluate(PLOT_POINTS)
    page.wait_for_function("document.querySelector('#lrc-status').innerText.toLowerCase().includes('completed')",
                           timeout=180_000)
    page.wait_for_function(f"({PLOT_POINTS})() >= 16")
    final = page.evaluate(PLOT_POINTS)
    assert final == 16 and final >= first
    status = page.inner_text("#lrc-status")
    assert "dev accuracy" in status
    run_id = page.input_value("#lrc-run-id textarea, #lrc-run-id input")
    assert run_id.startswith("lrc-sst2-")
    shot(page, "distill")

    page.get_by_role("tab", name="Predict").click()
    page.wait_for_function(
        "(() => { const i = document.querySelector('#lrc-predict-run input'); return i && i.value.length > 0; })()")
    page.fill("#lrc-text-a textarea", "a gorgeous, witty, seductive movie")
    page.click("#lrc-predict")
    page.wait_for_function("document.querySelector('#lrc-verdict').innerText.includes('latency')")
    for who in ("teacher", "student"):
        text = page.inner_text(f"#lrc-{who}-label")
        assert "positive" in text or "negative" in text, (who, text)
    assert "agree" in page.inner_text("#lrc-verdict").lower()
    shot(page, "predict")

    page.get_by_role("tab", name="Runs").click()
    page.wait_for_function(f"document.querySelector('#lrc-runs-table').innerText.includes('{run_id}')")
    shot(page, "runs")
    page.close()
