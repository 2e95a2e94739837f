"""Load: 16 concurrent `gradio_client` users calling `predict` on the real server while one run trains and two wait.

Loopback only and bounded in time. The server is `python -m tools.apptest` (the real app, with the paced stand-in
runner so the training run holds the worker without taking the CPU the predictions need); the predicted run is
a tiny random BERT pair saved in the store. Checked: zero errors; every answer equals what `lrc.predict` gives
for the same models and text; the two waiting runs start in the order they were submitted; the server's memory
stays flat (its model cache is bounded). p50/p95 latency are printed, and written as JSON to $LRC_LOAD_REPORT.

    LRC_LOAD_REPORT=/tmp/load.json HF_HUB_OFFLINE=1 python -m pytest -q -s tests/test_load.py
"""

from __future__ import annotations

import json
import os
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tools.apptest import AppProcess, make_tiny_teacher, write_preset
from lrc.runs import RunStore

USERS, CALLS = 16, 5
MAX_LENGTH = 32
RSS_MARGIN_MB = 300
_WORDS = ("a gorgeous witty seductive movie dull lifeless mess great acting clever script boring slow plot "
          "warm funny moving film ugly waste of time 🎬 très bien сильный фильм").split()


def text_for(user: int, call: int) -> str:
    n = 4 + (user * 3 + call) % 9
    return " ".join(_WORDS[(user * 7 + call * 5 + j * 3) % len(_WORDS)] for j in range(n))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q% of the values at or below it."""
    ordered = sorted(values)
    rank = max(1, int(-(-q * len(ordered) // 100)))
    return ordered[rank - 1]


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("load")
    store = RunStore(tmp / "runs")
    teacher = store.create({"task": "sst2", "max_seq_length": MAX_LENGTH}, run_id="teacher-tiny", kind="teacher")
    make_tiny_teacher(teacher.path / "model", layers=2, hidden=64, seed=0)
    teacher.set_status("completed")
    student = store.create({"task": "sst2", "max_seq_length": MAX_LENGTH, "teacher": str(teacher.path)},
                           run_id="load-run")
    make_tiny_teacher(student.path / "student", layers=1, hidden=32, seed=1)
    student.set_status("completed")
    with AppProcess(store.root, preset=write_preset(tmp / "tiny.yaml"), paced_step_s=0.05) as app:
        yield {"app": app, "store": store, "teacher": teacher.path / "model", "student": student.path / "student"}


def expected_answers(server) -> dict[str, dict]:
    """What lrc itself says for every text the users will send: the reference the server must match."""
    from lrc.predict import ModelCache, predict

    cache = ModelCache(capacity=2)
    out = {}
    for user in range(USERS):
        for call in range(CALLS):
            text = text_for(user, call)
            out[text] = {who: predict(str(server[who]), text, None, MAX_LENGTH, cache)
                         for who in ("teacher", "student")}
    return out


def queue_three_runs(url: str):
    """One run that trains until stopped, then two short ones that must wait, each from its own user."""
    from gradio_client import Client

    owners = [Client(url, verbose=False) for _ in range(3)]
    steps = (100_000, 20, 20)
    jobs, ids = [], []
    for client, n in zip(owners, steps):
        jobs.append(client.submit(task="sst2", settings={"stage1_steps": n}, api_name="/distill"))
        ids.append(wait_for(jobs[-1], lambda s: bool(s.get("run_id")))["run_id"])
    wait_for(jobs[0], lambda s: s["status"] == "running")
    for position, job in ((1, jobs[1]), (2, jobs[2])):
        state = wait_for(job, lambda s, p=position: s["status"] == "waiting" and s["queue_position"] == p)
        assert state["runs_ahead"] == position
    return owners, jobs, ids


def wait_for(job, predicate, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        outputs = job.outputs()
        if outputs and predicate(outputs[-1]):
            return outputs[-1]
        time.sleep(0.05)
    raise AssertionError(f"no matching state within {timeout} s; last: {job.outputs()[-1:]}")


def hammer(url: str) -> tuple[list[float], list[tuple[str, dict]], list[str]]:
    """USERS threads, each its own gradio_client session, each calling predict CALLS times at once."""
    from gradio_client import Client

    latencies, answers, errors = [], [], []
    lock, ready = threading.Lock(), threading.Barrier(USERS)

    def user(n: int) -> None:
        try:
            client = Client(url, verbose=False)
        except Exception as exc:  # noqa: BLE001 - every failure is counted, none may happen
            errors.append(f"user {n} could not connect: {exc!r}")
            ready.abort()
            return
        ready.wait(timeout=120)
        for call in range(CALLS):
            text = text_for(n, call)
            start = time.perf_counter()
            try:
                raw = client.predict("load-run", text, "", api_name="/predict")[3]
            except Exception as exc:  # noqa: BLE001
                with lock:
                    errors.append(f"user {n} call {call}: {exc!r}")
                continue
            with lock:
                latencies.append(time.perf_counter() - start)
                answers.append((text, raw))

    with ThreadPoolExecutor(USERS) as pool:
        list(pool.map(user, range(USERS)))
    return latencies, answers, errors


def check_answer(text: str, raw: dict, expected: dict) -> None:
    for who in ("teacher", "student"):
        want, got = expected[text][who], raw[who]
        assert got["label"] == want.label, (who, text)
        assert got["probabilities"] == pytest.approx(want.probabilities, abs=1e-5), (who, text)
        assert got["truncated"] == want.truncated and got["num_tokens"] == want.num_tokens


def started_at(store: RunStore, run_id: str) -> float:
    return float(store.get(run_id).status_info["started"])


@pytest.mark.timeout(240)
def test_sixteen_users_predict_while_one_run_trains_and_two_wait(server):
    from gradio_client import Client

    app, store = server["app"], server["store"]
    expected = expected_answers(server)
    owners, jobs, ids = queue_three_runs(app.url)
    Client(app.url, verbose=False).predict("load-run", "warm up", "", api_name="/predict")  # models into the cache
    rss_before = rss_mb(app.proc.pid)

    started = time.perf_counter()
    latencies, answers, errors = hammer(app.url)
    wall = time.perf_counter() - started
    rss_after = rss_mb(app.proc.pid)

    assert errors == []
    assert len(answers) == USERS * CALLS
    for text, raw in answers:
        check_answer(text, raw, expected)
    assert rss_after - rss_before < RSS_MARGIN_MB, (rss_before, rss_after)
    # the load did not disturb the queue: the trainer still runs, the two others still wait in their order
    assert store.get(ids[0]).status == "running"
    assert [store.get(i).status for i in ids[1:]] == ["queued", "queued"]

    assert "Stopping" in owners[0].predict(ids[0], api_name="/stop")
    finals = [job.result(timeout=60) for job in jobs]
    assert [f["status"] for f in finals] == ["stopped", "completed", "completed"]
    first, second, third = (started_at(store, i) for i in ids)
    assert first < second < third  # submission order
    assert second >= float(store.get(ids[0]).status_info["finished"]) - 0.5  # one at a time

    report = {
        "users": USERS, "calls_per_user": CALLS, "requests": len(latencies), "errors": len(errors),
        "p50_ms": round(statistics.median(latencies) * 1000, 1), "p95_ms": round(percentile(latencies, 95) * 1000, 1),
        "max_ms": round(max(latencies) * 1000, 1), "wall_s": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 1),
        "server_rss_mb_before": round(rss_before, 1), "server_rss_mb_after": round(rss_after, 1),
        "queue": "1 paced run training, 2 waiting (started in submission order)",
        "cpu_count": os.cpu_count(),
    }
    print("\nload test:", json.dumps(report))
    if os.environ.get("LRC_LOAD_REPORT"):
        Path(os.environ["LRC_LOAD_REPORT"]).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")


def test_model_cache_is_bounded(tmp_path):
    """Least recently used out: however many models are asked for, at most `capacity` stay loaded, and the app's
    own cache is such a bounded cache."""
    from studio.state import AppContext, AppSettings
    from lrc.predict import ModelCache

    folders = [make_tiny_teacher(tmp_path / f"m{i}", layers=1, hidden=32, seed=i) for i in range(4)]
    cache = ModelCache(capacity=2)
    first = cache.get(str(folders[0]))
    for folder in folders[1:]:
        cache.get(str(folder))
        assert len(cache) <= 2
    assert cache.get(str(folders[3])) is cache.get(str(folders[3]))  # a hit, not a reload
    assert cache.get(str(folders[0])) is not first  # evicted, loaded again
    app_cache = AppContext.create(AppSettings(runs_dir=str(tmp_path / "runs"))).model_cache()
    assert isinstance(app_cache, ModelCache) and 1 <= app_cache.capacity <= 4
