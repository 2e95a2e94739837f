"""`python app.py` on a free local port, driven with gradio_client: distil to completion, queue, stop, predict.

The run is real and end to end: the GLUE SST-2 files (a synthetic stand-in when the GLUE folder is absent), the
bundled MiniLM teacher fine-tuned on 64 examples first, then a 2-layer 64-wide student for 8 steps.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tools.apptest import AppProcess, write_preset, write_tiny_glue

ROOT = Path(__file__).resolve().parent.parent


def glue_dir(tmp: Path) -> Path:
    for candidate in (os.environ.get("GLUE_DIR"), ROOT.parent / "shared" / "glue"):
        if candidate and (Path(candidate) / "SST-2" / "train.tsv").exists():
            return Path(candidate)
    return write_tiny_glue(tmp / "glue")


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("client")
    preset = write_preset(tmp / "tiny.yaml")
    with AppProcess(tmp / "runs", data_dir=glue_dir(tmp), preset=preset) as app:
        yield app.url


def wait_for(job, predicate, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outputs = job.outputs()
        if outputs and predicate(outputs[-1]):
            return outputs[-1]
        if job.done():
            break
        time.sleep(0.2)
    raise AssertionError(f"no matching update; last: {job.outputs()[-1:] if job.outputs() else None}")


def test_distill_queue_stop_and_predict(app_url):
    from gradio_client import Client

    alice, bob = Client(app_url, verbose=False), Client(app_url, verbose=False)
    first = alice.submit(task="sst2", run_name="client-run", api_name="/distill")
    wait_for(first, lambda state: state["run_id"] == "client-run")
    # a second user's run waits in line and is told so; Stop takes it off the queue
    second = bob.submit(task="sst2", settings={"perturb": False}, api_name="/distill")
    waiting = wait_for(second, lambda state: state["status"] == "waiting")
    assert waiting["queue_position"] == 1 and waiting["runs_ahead"] == 1 and "1st in line" in waiting["message"]
    assert "taken off the queue" in bob.predict(waiting["run_id"], api_name="/stop")
    assert second.result(timeout=30)["status"] == "stopped"

    final = first.result(timeout=480)  # generous for a loaded 2-core machine
    assert final["status"] == "completed" and final["done"], final["message"]
    assert isinstance(final["summary"]["score"], float) and final["summary"]["teacher_score"] is not None
    assert len(final["curves"]["loss"]) == final["total_steps"] == 8 and final["stage2_at"]
    assert {"cos_nce", "soft", "hard"} <= set(final["curves"])
    assert len(first.outputs()) >= 3  # the state streamed in several updates while it trained

    runs = {r["run"]: r for r in alice.predict(api_name="/runs")}
    assert runs["client-run"]["status"] == "completed" and isinstance(runs["client-run"]["score"], float)
    assert runs[waiting["run_id"]]["status"] == "stopped"

    teacher, student, verdict, raw = alice.predict("client-run", "a gorgeous, witty, seductive movie", "",
                                                   api_name="/predict")
    assert teacher["label"] in ("negative", "positive") and student["label"] in ("negative", "positive")
    assert {c["label"] for c in student["confidences"]} == {"negative", "positive"}
    assert raw["teacher"]["params"] > raw["student"]["params"] and "latency" in verdict
    assert "not running" in alice.predict("client-run", api_name="/stop")
