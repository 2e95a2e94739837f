"""The app's callbacks, called directly (no server, no browser), with tiny models and a tiny synthetic SST-2.

Real distillations run through the real job queue and `lrc.pipeline`, from a 2-layer 64-wide teacher, so a run
takes seconds; the queue and Stop tests use a stand-in runner that writes step events until it is stopped.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import zipfile

from pathlib import Path

import gradio as gr
import pytest

from studio import figures, predicting
from studio.jobs import JobManager
from studio.state import AppContext, AppSettings
from tools.apptest import make_tiny_teacher, write_preset, write_tiny_glue
from studio.form import FORM_FIELDS, PRESET_FIELDS, form_values
from studio.ui import Studio, build_app
from lrc.config import list_presets
from lrc.runs import RunStore
from lrc.tasks import TASKS

os.environ.setdefault("HF_HUB_OFFLINE", "1")


class Recorder:
    """Stands in for gr.Progress: remembers every call."""

    def __init__(self):
        self.calls = []

    def __call__(self, progress, desc=None, total=None, unit="steps"):
        self.calls.append((progress, desc))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("app")
    glue = write_tiny_glue(root / "glue")
    teacher = make_tiny_teacher(root / "teacher")
    preset = write_preset(root / "tiny.yaml", max_train_examples=48, max_eval_examples=32, batch_size=16, epochs=2,
                          student={"layers": 1})
    # the tiny teacher is a folder outside the store: this "operator" allows local model paths
    ctx = AppContext.create(AppSettings(runs_dir=str(root / "runs"), data_dir=str(glue), preset=str(preset),
                                        allow_local_paths=True))
    studio = Studio(ctx)
    yield {"root": root, "teacher": str(teacher), "preset": str(preset), "ctx": ctx, "studio": studio}
    ctx.jobs.close()


def form(env, **changes):
    values = {"task": "sst2", "teacher": env["teacher"], "preset": env["preset"], "run_name": ""}
    values.update({k: v for k, v in form_values(env["preset"]).items() if k in PRESET_FIELDS})
    values.update(changes)
    return {name: values[name] for name in FORM_FIELDS}


def run_to_end(env, **changes):
    progress = Recorder()
    outputs = list(env["studio"].distill_form(form(env, **changes), request=None, progress=progress))
    return outputs, progress


@pytest.fixture(scope="module")
def lrc_run(env):
    outputs, progress = run_to_end(env, run_name="tiny-lrc")
    return {"outputs": outputs, "progress": progress, "run_id": outputs[-1][0]}


@pytest.fixture(scope="module")
def kd_run(env, lrc_run):
    """A plain-KD run through the `distill` API endpoint: the preset, then only the settings that change."""
    states = list(env["studio"].distill(task="sst2", teacher=env["teacher"], run_name="tiny-kd",
                                        settings={"use_cos_nce": False, "perturb": False}))
    return states


# ---- the Distill form --------------------------------------------------------------------------------------------

def test_presets_fill_every_knob(env):
    studio = env["studio"]
    for preset in list_presets():
        values = studio.apply_preset(preset)
        assert len(values) == len(PRESET_FIELDS)
    paper = dict(zip(PRESET_FIELDS, studio.apply_preset("lrc-paper")))
    assert (paper["temperature"], paper["alpha"], paper["beta"], paper["gamma"]) == (1.1, 1.0, 1.0, 3.0)
    assert (paper["student_layers"], paper["student_hidden"], paper["student_ffn"]) == (4, 312, 1200)
    assert paper["perturb"] is True and paper["epsilon"] == 1.0 and paper["negatives"] == "batch"
    kd = dict(zip(PRESET_FIELDS, studio.apply_preset("kd-baseline")))
    assert kd["use_cos_nce"] is False and kd["perturb"] is False
    with pytest.raises(gr.Error):
        studio.apply_preset("no-such-preset")
    with pytest.raises(gr.Error, match="unknown preset"):  # a request cannot make the server read a file
        next(studio.distill_form(form(env, preset="/etc/hostname"), request=None, progress=Recorder()))


def test_form_to_config(env):
    studio = env["studio"]
    values = form(env, stage1_steps=6, stage2_steps=2, use_cos_nce=False, teacher="bundled")
    cfg, run_id = studio.config_from_form(values)
    assert cfg.max_steps == 8 and cfg.stage1_fraction == pytest.approx(0.75) and cfg.two_stage
    assert cfg.alpha == 0.0 and not cfg.use_cos_nce and cfg.teacher is None and run_id is None
    assert cfg.data_dir == env["ctx"].settings.data_dir
    values = form(env, stage1_steps=0, stage2_steps=5)
    cfg, _ = studio.config_from_form(values)
    assert cfg.max_steps == 5 and not cfg.two_stage
    values = form(env, student_heads=5)  # 64 is not divisible by 5
    with pytest.raises(gr.Error, match="divisible"):
        next(studio.distill_form(values, request=None, progress=Recorder()))
    with pytest.raises(gr.Error, match="whole number"):
        next(studio.distill_form(form(env, batch_size=2.5), request=None, progress=Recorder()))
    with pytest.raises(gr.Error, match="invalid run id"):
        next(studio.distill_form(form(env, run_name="../escape"), request=None, progress=Recorder()))


def test_teacher_choices_list_finished_teacher_runs(env, lrc_run):
    studio = env["studio"]
    assert studio.teacher_choices()[0][1] == "bundled"
    store = env["ctx"].store
    run = store.create({"task": "sst2"}, run_id="teacher-sst2-test", kind="teacher")
    (run.path / "model").mkdir()
    (run.path / "model" / "config.json").write_text("{}")
    run.set_status("completed")
    values = [v for _label, v in studio.teacher_choices("sst2")]
    assert str(run.path) in values
    assert str(run.path) not in [v for _label, v in studio.teacher_choices("rte")]
    store.delete(run.id)


# ---- a real tiny distillation, streamed --------------------------------------------------------------------------

def test_distill_streams_curves_to_the_end(env, lrc_run):
    outputs = lrc_run["outputs"]
    run_id, status, fig = outputs[-1]
    assert run_id == "tiny-lrc"
    assert "completed" in status.lower() and "dev accuracy" in status, status
    # at least the first state and the final one; how many training states land in between depends on the
    # machine's speed (a quiet machine finishes 6 tiny steps within one poll), so streaming itself is checked by
    # the progress calls below and by the browser test
    assert len(outputs) >= 2 and "loading" in outputs[0][1].lower()
    names = {trace.name for trace in fig.data}
    assert {"total", "COS-NCE", "soft (KL)", "hard (CE)", "dev accuracy"} <= names, names
    total = next(t for t in fig.data if t.name == "total")
    assert list(total.x) == sorted(total.x) and max(total.x) == 6  # 48 examples / 16 = 3 steps per epoch, 2 epochs
    assert any(shape.line.dash == "dash" for shape in fig.layout.shapes)  # the stage boundary
    steps = [p for p, _d in lrc_run["progress"].calls if isinstance(p, tuple)]
    assert steps and steps[-1] == (6, 6)
    run = env["ctx"].store.get(run_id)
    assert run.status == "completed" and run.meta["source"] == "app" and "owner" in run.meta


def test_watch_replays_a_finished_run_and_handles_unknown_ids(env, lrc_run):
    studio = env["studio"]
    outputs = list(studio.watch(lrc_run["run_id"], progress=Recorder()))
    assert len(outputs) == 1 and "completed" in outputs[0][1].lower()
    empty = list(studio.watch("", progress=Recorder()))
    assert empty[0][0] == "" and "No run is active" in empty[0][1]
    with pytest.raises(gr.Error):
        list(studio.watch("no-such-run", progress=Recorder()))


def test_failed_run_ends_the_stream_with_the_reason(env):
    # a teacher whose config passes the checks before queueing but whose weights are damaged fails in the run
    broken = env["root"] / "broken-teacher"
    broken.mkdir(exist_ok=True)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (Path(env["teacher"]) / name).exists():
            shutil.copy(Path(env["teacher"]) / name, broken / name)
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    outputs, _ = run_to_end(env, teacher=str(broken))
    status = outputs[-1][1]
    assert "**Failed**" in status and "weights file" in status and "damaged" in status, status


def test_api_distill_streams_json_states(env, kd_run):
    final = kd_run[-1]
    json.dumps(kd_run)  # every update is plain JSON
    assert final["done"] and final["status"] == "completed" and final["run_id"] == "tiny-kd"
    assert isinstance(final["summary"]["score"], float) and final["dev"]["dev"]["accuracy"] >= 0
    assert "cos_nce" not in final["curves"] and len(final["curves"]["loss"]) == 6
    assert all(not s["done"] for s in kd_run[:-1])
    cfg = env["ctx"].store.get("tiny-kd").config
    assert cfg["use_cos_nce"] is False and cfg["alpha"] == 0.0 and cfg["perturb"] is False
    assert cfg["max_train_examples"] == 48  # from the app's preset
    watched = list(env["studio"].watch_state("tiny-kd"))
    assert len(watched) == 1 and watched[0]["status"] == "completed"
    # a preset alone sets every knob it names (kd-baseline is plain KD without listing its switches)
    cfg, _ = env["studio"].build_config("sst2", "kd-baseline", None, {"stage1_steps": 3, "stage2_steps": 1})
    assert not cfg.use_cos_nce and not cfg.perturb and cfg.max_steps == 4
    with pytest.raises(gr.Error, match="not settable"):  # no server paths through the API
        next(env["studio"].distill(settings={"data_dir": "/etc"}))
    with pytest.raises(gr.Error, match="unknown task"):
        next(env["studio"].distill(task="imagenet"))


# ---- the queue, Stop, re-attach ----------------------------------------------------------------------------------

def fake_runner(cfg, run, should_stop, store):
    """Writes a step event every 20 ms until stopped (or 400 steps), like the pipeline does."""
    run.set_status("running", started=time.time())
    run.append_event({"type": "start", "total_steps": 400, "stage1_steps": 320, "device": "cpu"})
    step = 0
    while step < 400 and not should_stop():
        step += 1
        run.append_event({"type": "step", "stage": 1, "step": step, "total_steps": 400, "loss": 1.0 / step,
                          "cos_nce": 1.0 / step, "samples_per_s": 100.0, "elapsed": step * 0.02})
        time.sleep(0.02)
    status = "stopped" if step < 400 else "completed"
    run.append_event({"type": "end", "status": status, "step": step, "message": f"stopped by request at step {step}"})
    run.set_status(status, finished=time.time())


def test_queue_positions_stop_and_reattach(tmp_path):
    store = RunStore(tmp_path / "runs")
    jobs = JobManager(store, devices=["cpu"], runner=fake_runner)
    ctx = AppContext(settings=AppSettings(runs_dir=str(store.root)), store=store, jobs=jobs)
    studio = Studio(ctx)
    from lrc.config import DistillConfig

    try:
        first = jobs.submit(DistillConfig(task="sst2"), owner="alice")
        second = jobs.submit(DistillConfig(task="sst2"), owner="bob")
        deadline = time.time() + 10
        while jobs.describe(first.id)["state"] != "running" and time.time() < deadline:
            time.sleep(0.02)
        assert jobs.describe(second.id) == {"state": "waiting", "position": 1, "ahead": 1, "waiting": 1}
        # bob's page shows his place in line and a progress bar at 0
        progress = Recorder()
        gen = studio.stream(second.id, progress)
        _rid, text, _fig = next(gen)
        assert "1st in line" in text and "1 run ahead" in text
        assert progress.calls[-1][0] == 0.0 and "queue" in progress.calls[-1][1]
        gen.close()
        # a new page re-attaches to the running run
        current, _update = studio.on_load()
        assert current == first.id
        assert studio.active_runs() == [first.id, second.id]
        # Stop a waiting run: it leaves the queue; Stop a running one: it ends at the next step
        assert "taken off the queue" in studio.stop(second.id)
        assert store.get(second.id).status == "stopped"
        assert "stopping" in studio.stop(first.id).lower()
        assert jobs.wait(first.id, timeout=10)
        final = list(studio.watch(first.id, progress=Recorder()))[-1]
        assert "stopped" in final[1].lower() and store.get(first.id).status == "stopped"
        assert "not running" in studio.stop(first.id)
        assert studio.stop("") == "No run to stop."
    finally:
        jobs.close()


def test_runs_survive_a_restart(env, lrc_run, tmp_path):
    store = env["ctx"].store
    ghost = store.create({"task": "sst2"}, run_id="ghost-run")
    ghost.set_status("queued", pid=2**22 + 12345)  # an app process that is gone
    try:
        ctx2 = AppContext.create(AppSettings(runs_dir=str(store.root)))
        records = {r["run"]: r for r in Studio(ctx2).runs()}
        assert records["tiny-lrc"]["status"] == "completed"
        assert records["ghost-run"]["status"] == "interrupted"
    finally:
        store.delete("ghost-run")


# ---- the Runs tab -----------------------------------------------------------------------------------------------

def test_runs_list_compare_and_download(env, lrc_run, kd_run):
    studio = env["studio"]
    records = {r["run"]: r for r in studio.runs()}
    lrc, kd = records["tiny-lrc"], records["tiny-kd"]
    assert lrc["task"] == "sst2" and lrc["status"] == "completed" and isinstance(lrc["score"], float)
    assert lrc["params"] > 0 and lrc["size_mb"] > 0 and lrc["samples_per_s"] > 0
    assert lrc["method"].startswith("LRC") and kd["method"].startswith("KD")
    json.dumps(studio.runs())  # the `runs` endpoint returns plain JSON
    table, pick, export = studio.runs_table()
    assert table["value"]["headers"][0] == "run" and "tiny-lrc" in pick["choices"]
    fig, scores, compare = studio.compare(["tiny-lrc", "tiny-kd"], "loss")
    assert {t.name for t in fig.data if t.mode == "lines"} == {"tiny-lrc", "tiny-kd"}
    assert "use_cos_nce" in compare["headers"] and "perturb" in compare["headers"]
    assert len(compare["data"]) == 2 and len(scores.data) >= 1
    cos_fig, _s, _c = studio.compare(["tiny-lrc", "tiny-kd"], "cos_nce")
    assert [t.name for t in cos_fig.data if t.mode == "lines"] == ["tiny-lrc"]  # KD has no COS-NCE term
    path = studio.download("tiny-lrc")
    with zipfile.ZipFile(path) as zf:
        names = set(zf.namelist())
    assert {"config.json", "model.safetensors", "lrc_model.json"} <= names
    with pytest.raises(gr.Error):
        studio.download("no-such-run")
    with pytest.raises(gr.Error, match="HF_TOKEN"):
        studio.push("tiny-lrc", "me/model")


# ---- the Predict tab --------------------------------------------------------------------------------------------

def test_predict_side_by_side(env, lrc_run):
    studio = env["studio"]
    assert "tiny-lrc" in studio.predict_choices()
    text_b, examples, info = studio.on_predict_run("tiny-lrc")
    assert text_b["visible"] is False and len(examples["choices"]) >= 3 and "sst2" in info
    a, b = studio.pick_example("tiny-lrc", 0)
    assert a and b == ""
    teacher, student, verdict, raw = studio.predict("tiny-lrc", "a gorgeous, witty, seductive movie", "")
    assert set(teacher) == set(student) == {"negative", "positive"}
    assert sum(student.values()) == pytest.approx(1.0, abs=1e-4)
    assert raw["agree"] == (raw["teacher"]["label"] == raw["student"]["label"])
    assert "latency" in verdict and "parameters" in verdict and "agree" in verdict.lower()
    assert raw["teacher"]["params"] > raw["student"]["params"] > 0
    with pytest.raises(gr.Error, match="empty"):
        studio.predict("tiny-lrc", "   ", "")
    with pytest.raises(gr.Error):
        studio.predict("", "text", "")


def test_disagreements_view(env, lrc_run):
    text, table = env["studio"].disagreements("tiny-lrc", 20)
    assert "agrees with the teacher" in text
    assert table["headers"] == ["gold", "teacher", "student", "text"]
    for row in table["data"]:
        assert row[1].split(" ")[0] != row[2].split(" ")[0]


def test_regression_predictions_show_a_score():
    def side(score):
        return {"label": f"{score:.3f}", "probabilities": {}, "score": score, "latency_ms": 2.0, "params": 10,
                "truncated": False, "num_tokens": 5, "notes": []}

    assert predicting.label_value(side(3.2)) == "3.200"
    text = predicting.comparison_markdown({"student": side(3.0), "teacher": side(3.2), "agree": True})
    assert "3.000" in text and "3.200" in text and "agree" in text


def test_examples_exist_for_every_task():
    for name, spec in TASKS.items():
        examples = predicting.load_examples(name)
        assert len(examples) >= 2, name
        assert all(bool(e.get("text_b")) == spec.is_pair for e in examples), name


# ---- figures and the layout -------------------------------------------------------------------------------------

def test_loss_figure_from_events():
    events = [
        {"type": "start", "phase": "teacher", "total_steps": 2},
        {"type": "step", "phase": "teacher", "step": 1, "total_steps": 2, "loss": 0.7, "hard": 0.7},
        {"type": "teacher_ready", "path": "/t", "cached": False},
        {"type": "start", "total_steps": 4, "stage1_steps": 2, "device": "cpu"},
        {"type": "step", "stage": 1, "step": 1, "loss": 3.0, "cos_nce": 3.0},
        {"type": "step", "stage": 1, "step": 2, "loss": 2.5, "cos_nce": 2.5},
        {"type": "eval", "stage": 1, "step": 2, "split": "dev", "metrics": {"accuracy": 0.6}},
        {"type": "stage", "stage": 2, "step": 2},
        {"type": "step", "stage": 2, "step": 4, "loss": 5.0, "cos_nce": 2.0, "soft": 0.1, "hard": 0.9},
        {"type": "end", "status": "completed", "step": 4},
    ]
    curves = figures.curves_of(events)
    assert curves.series["loss"] == [(1, 3.0), (2, 2.5), (4, 5.0)]  # the teacher's phase is not on the curve
    assert curves.stage2_at == 2 and curves.total_steps == 4 and curves.count == len(events)
    fig = figures.loss_figure(curves, "accuracy")
    assert [t.name for t in fig.data] == ["total", "COS-NCE", "soft (KL)", "hard (CE)", "dev accuracy"]
    assert figures.loss_figure(None).layout.annotations  # the empty state says what to do
    # a regression task's label losses are MSE, and the legend and the compare title say so
    fig = figures.loss_figure(curves, "pearson")
    assert [t.name for t in fig.data] == ["total", "COS-NCE", "soft (MSE)", "hard (MSE)"]  # no pearson evals here
    compared = figures.compare_figure([("a", curves, "pearson")], term="hard")
    assert compared.layout.title.text.startswith("hard (MSE) loss")


def test_app_builds_with_named_endpoints(env):
    demo = build_app(env["ctx"])
    names = {d.get("api_name") for d in demo.config["dependencies"] if d.get("api_visibility", "public") == "public"}
    assert {"distill", "stop", "runs", "predict", "watch", "compare", "download", "disagreements"} <= names
    assert "distill_form" not in names  # the form's event is the UI's, the API has the `distill` endpoint


def test_resume_continues_a_stopped_run_from_its_checkpoint(env):
    from lrc.pipeline import run_distill

    studio, store = env["studio"], env["ctx"].store
    cfg, _ = studio.config_from_form(form(env, stage1_steps=4, stage2_steps=4))
    run = store.create(cfg.to_dict(), run_id="to-resume", kind="distill", owner="someone-else")
    stop = {"now": False}
    for ev in run_distill(cfg, run, lambda: stop["now"], store=store):
        stop["now"] = stop["now"] or (ev["type"] == "step" and ev["step"] >= 3)
    assert run.status == "stopped" and (run.path / "checkpoint").exists()

    outputs = list(studio.resume("to-resume", request=None, progress=Recorder()))
    assert outputs[-1][0] == "to-resume" and "Completed" in outputs[-1][1]
    assert run.status == "completed" and run.summary["steps"] == 8
    steps = [e["step"] for e in run.read_events() if e["type"] == "step"]
    assert steps == list(range(1, 9))
    with pytest.raises(gr.Error, match="already completed"):
        next(studio.resume("to-resume", request=None, progress=Recorder()))
    with pytest.raises(gr.Error, match="invalid run id"):
        next(studio.resume("../x", request=None, progress=Recorder()))


def test_public_api_is_exactly_the_documented_endpoints(env):
    """Internal wiring (the Layers tab, re-attach, form helpers) must not leak out as API endpoints."""
    demo = build_app(env["ctx"])
    names = {name.strip("/") for name in demo.get_api_info()["named_endpoints"]}
    assert names == {"distill", "watch", "stop", "resume", "runs", "compare", "predict", "disagreements",
                     "download", "delete", "push", "experiment"}
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert all(f"`{n}`" in readme for n in names), "README lists every endpoint"
