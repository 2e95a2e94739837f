"""Faults lose nothing: resume after a stop or a SIGKILL, stop during evaluation or a save, disk full, OOM."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

import lrc.execute
from lrc.errors import LRCError
from lrc.pipeline import resumable, resume_run, run_distill
from lrc.runs import RunStore
from lrc.checkpoints import read_trainer_state
from lrc.train import Distiller

from conftest import tiny_config

ROOT = Path(__file__).resolve().parents[1]


def _cfg(glue, teacher, **changes):
    base = dict(data_dir=str(glue), teacher=str(teacher), max_steps=12, max_train_examples=16, max_eval_examples=4,
                eval_every=5)
    base.update(changes)
    return tiny_config(**base)


def _weights(run) -> dict[str, torch.Tensor]:
    return load_file(str(run.path / "student" / "model.safetensors"))


def _stop_at(step: int):
    flag = {"now": False}

    def should_stop() -> bool:
        return flag["now"]

    def watch(events):
        for ev in events:
            if ev["type"] == "step" and ev["step"] >= step:
                flag["now"] = True
            yield ev
    return should_stop, watch


@pytest.mark.parametrize("options", [{}, {"length_grouping": True, "teacher_cache": True, "negatives": "bank",
                                          "num_negatives": 4}, {"negatives": "bank", "num_negatives": 4}],
                         ids=["plain", "grouped-cached-bank", "live-bank"])
def test_resume_after_stop_matches_an_uninterrupted_run(shared_glue_dir, tiny_teacher_dir, tmp_path, options):
    cfg = _cfg(shared_glue_dir, tiny_teacher_dir, **options)
    store = RunStore(tmp_path / "runs")
    whole = store.create(cfg.to_dict(), run_id="whole")
    assert list(run_distill(cfg, whole, store=store))[-1]["status"] == "completed"
    assert not (whole.path / "checkpoint").exists(), "a completed run drops its resumable checkpoint"

    cut = store.create(cfg.to_dict(), run_id="cut")
    should_stop, watch = _stop_at(7)
    events = list(watch(run_distill(cfg, cut, should_stop, store=store)))
    assert events[-1]["status"] == "stopped" and events[-1]["step"] == 7
    assert read_trainer_state(cut.path / "checkpoint")["step"] == 7 and resumable(cut)

    resumed = list(resume_run(cut))
    assert resumed[-1]["status"] == "completed" and resumed[-1]["step"] == 12
    assert [e for e in resumed if e["type"] == "resume"][0]["step"] == 7
    steps = [e["step"] for e in cut.read_events() if e["type"] == "step"]
    assert steps == sorted(steps) and len(steps) == len(set(steps)) == 12, "curves must not double back"
    assert cut.status == "completed" and cut.summary["steps"] == 12 and cut.summary.get("resumed")
    a, b = _weights(whole), _weights(cut)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)
    assert whole.summary["metrics"] == cut.summary["metrics"]


def test_resume_refuses_running_completed_and_checkpointless_runs(shared_glue_dir, tiny_teacher_dir, tmp_path):
    cfg = _cfg(shared_glue_dir, tiny_teacher_dir, max_steps=3)
    store = RunStore(tmp_path / "runs")
    done = store.create(cfg.to_dict(), run_id="done")
    list(run_distill(cfg, done, store=store))
    with pytest.raises(LRCError, match="already completed"):
        resume_run(done)
    live = store.create(cfg.to_dict(), run_id="live")
    live.set_status("running")  # this very process: alive
    with pytest.raises(LRCError, match="still running"):
        resume_run(live)
    empty = store.create(cfg.to_dict(), run_id="empty")
    empty.set_status("stopped")
    with pytest.raises(LRCError, match="no checkpoint"):
        resume_run(empty)


def test_stop_during_the_final_evaluation_ends_stopped_with_a_student(shared_glue_dir, tiny_teacher_dir, tmp_path):
    cfg = _cfg(shared_glue_dir, tiny_teacher_dir, max_steps=4, eval_every=0, batch_size=2)
    store = RunStore(tmp_path / "runs")
    run = store.create(cfg.to_dict(), run_id="eval-stop")
    should_stop, watch = _stop_at(4)  # the flag rises after the last step: only the evaluation sees it
    events = list(watch(run_distill(cfg, run, should_stop, store=store)))
    assert events[-1]["status"] == "stopped" and "evaluation" in events[-1]["message"]
    assert run.status == "stopped"
    AutoModelForSequenceClassification.from_pretrained(run.path / "student")


def test_stop_during_a_save_finishes_the_save_then_stops(shared_glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    flag = {"now": False}
    real_save = lrc.execute.save_model_atomic

    def save_and_press_stop(*args, **kwargs):
        flag["now"] = True  # Stop pressed while the checkpoint is being written
        return real_save(*args, **kwargs)

    monkeypatch.setattr(lrc.execute, "save_model_atomic", save_and_press_stop)
    cfg = _cfg(shared_glue_dir, tiny_teacher_dir, save_every=3, eval_every=0)
    store = RunStore(tmp_path / "runs")
    run = store.create(cfg.to_dict(), run_id="save-stop")
    events = list(run_distill(cfg, run, lambda: flag["now"], store=store))
    assert events[-1]["status"] == "stopped" and events[-1]["step"] == 3
    assert read_trainer_state(run.path / "checkpoint")["step"] == 3
    AutoModelForSequenceClassification.from_pretrained(run.path / "student")


def test_disk_full_while_saving_keeps_the_previous_checkpoint(shared_glue_dir, tiny_teacher_dir, tmp_path):
    """A real OS write limit (RLIMIT_FSIZE, as a full disk would refuse) after the first checkpoint."""
    cfg = _cfg(shared_glue_dir, tiny_teacher_dir, save_every=3, eval_every=0)
    store = RunStore(tmp_path / "runs")
    run = store.create(cfg.to_dict(), run_id="full-disk")
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead
    events = []
    try:
        with pytest.raises(LRCError, match="disk space") as info:
            for ev in run_distill(cfg, run, store=store):
                events.append(ev)
                if ev["type"] == "checkpoint":  # the first checkpoint is whole; now the "disk" fills up
                    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, limits[1]))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, previous)
    assert "intact" in str(info.value)
    assert [e["step"] for e in events if e["type"] == "checkpoint"] == [3]
    assert read_trainer_state(run.path / "checkpoint")["step"] == 3
    assert json.loads((run.path / "student" / "lrc_model.json").read_text())["tag"] == "step-3"
    AutoModelForSequenceClassification.from_pretrained(run.path / "student")
    assert run.status == "failed" and "disk space" in run.status_info["message"]
    assert not list(run.path.glob(".*.tmp")), "half-written temp folders are cleaned up"
    resumed = list(resume_run(run))  # space is back: the run continues from step 3
    assert resumed[-1]["status"] == "completed" and resumed[-1]["step"] == 12


def test_out_of_memory_suggests_a_smaller_batch_and_the_next_run_works(shared_glue_dir, tiny_teacher_dir, tmp_path,
                                                                        monkeypatch):
    real_step = Distiller._train_step

    def oom(self, batch, stage):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    cfg = _cfg(shared_glue_dir, tiny_teacher_dir, max_steps=2, batch_size=8)
    store = RunStore(tmp_path / "runs")
    monkeypatch.setattr(Distiller, "_train_step", oom)
    run = store.create(cfg.to_dict(), run_id="oom")
    with pytest.raises(LRCError, match="batch size of 4"):
        list(run_distill(cfg, run, store=store))
    assert run.status == "failed" and "out of memory" in run.status_info["message"]
    monkeypatch.setattr(Distiller, "_train_step", real_step)
    again = store.create(cfg.to_dict(), run_id="after-oom")
    assert list(run_distill(cfg, again, store=store))[-1]["status"] == "completed"


def _events(path: Path) -> list[dict]:
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(x) for x in lines if x.strip()]


def test_sigkill_mid_run_shows_interrupted_and_resumes(shared_glue_dir, tiny_teacher_dir, tmp_path):
    out = tmp_path / "runs" / "killed"
    cmd = [sys.executable, "-m", "lrc", "distill", "--task", "sst2", "--data-dir", str(shared_glue_dir),
           "--teacher", str(tiny_teacher_dir), "--out", str(out), "--max-steps", "100000", "--save-every", "5",
           "--batch-size", "4", "--max-seq-length", "16", "--max-train-examples", "16", "--max-eval-examples", "4",
           "--student-layers", "2", "--student-hidden", "16", "--student-heads", "2", "--student-ffn", "32",
           "--student-init", "random", "--device", "cpu", "--log-every", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if sum(e["type"] == "checkpoint" for e in _events(out / "events.jsonl")) >= 2:
                break
            time.sleep(0.2)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    from lrc.runs import run_from_path

    run = run_from_path(out)
    assert run.status == "interrupted"
    seen = [e for e in run.read_events() if e["type"] == "step"]
    assert seen and seen[-1]["step"] >= 10
    state = read_trainer_state(out / "checkpoint")
    assert state["step"] % 5 == 0 and state["step"] >= 10
    AutoModelForSequenceClassification.from_pretrained(out / "student")

    flag = {"n": 0}

    def stop_after_three_more() -> bool:
        return flag["n"] >= 3

    events = []
    for ev in resume_run(run, stop_after_three_more):
        events.append(ev)
        flag["n"] += ev["type"] == "step"
    assert events[-1]["status"] == "stopped" and events[-1]["step"] == state["step"] + 3
    steps = [e["step"] for e in run.read_events() if e["type"] == "step"]
    assert steps == list(range(1, state["step"] + 4)), "events after the checkpoint were superseded"


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_weights_file_is_one_clear_cli_error(tiny_teacher_dir, tmp_path, capsys, damage):
    import shutil

    from lrc.cli import main

    model = tmp_path / "model"
    shutil.copytree(tiny_teacher_dir, model)
    weights = model / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[: len(data) // 2], "garbage": b"\x00\xff" * 64, "empty": b""}[damage])
    assert main(["predict", "--model", str(model), "a fine film"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "damaged or incomplete" in err[0] and str(model) in err[0]


def test_a_stopped_teacher_fine_tuning_resumes_too(shared_glue_dir, tiny_teacher_dir, tmp_path):
    from lrc.pipeline import run_teacher

    cfg = _cfg(shared_glue_dir, tiny_teacher_dir, max_steps=8, eval_every=0)
    store = RunStore(tmp_path / "runs")
    run = store.create(cfg.to_dict(), run_id="teacher-cut", kind="teacher")
    should_stop, watch = _stop_at(3)
    assert list(watch(run_teacher(cfg, run, should_stop)))[-1]["status"] == "stopped"
    resumed = list(resume_run(run))
    assert resumed[-1]["status"] == "completed" and resumed[-1]["step"] == 8
    assert run.summary["kind"] == "teacher" and (run.path / "model" / "model.safetensors").exists()
    assert not (run.path / "student").exists()
