"""The run store: atomic JSON, tolerant event reading, status of dead runs, run-id validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lrc.runs
from lrc.errors import LRCError
from lrc.runs import Run, RunStore, atomic_write_json, read_json, run_from_path, validate_run_id


@pytest.fixture
def store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "runs")


def test_create_writes_config_and_queued_status(store):
    run = store.create({"task": "sst2", "lr": 1e-4}, run_id="r1")
    assert run.config["task"] == "sst2" and run.kind == "distill" and "created" in run.meta
    assert run.status == "queued"
    assert run.model_dir == run.path / "student"
    assert store.get("r1").path == run.path
    teacher = store.create({"task": "rte"}, run_id="t1", kind="teacher")
    assert teacher.model_dir == teacher.path / "model"
    assert {r.id for r in store.list()} == {"r1", "t1"}


def test_create_refuses_existing_run_unless_asked(store):
    run = store.create({"task": "sst2"}, run_id="r1")
    run.append_event({"type": "start"})
    with pytest.raises(LRCError, match="already exists"):
        store.create({"task": "sst2"}, run_id="r1")
    again = store.create({"task": "sst2"}, run_id="r1", exist_ok=True)
    assert again.path == run.path


def test_new_ids_are_unique(store):
    first = store.create({"task": "sst2"})
    second = store.create({"task": "sst2"})
    assert first.id != second.id and first.id.startswith("lrc-sst2-")
    assert store.new_id("rte", "teacher").startswith("teacher-rte-")


def test_get_missing_run(store):
    with pytest.raises(LRCError, match="no run 'nope'"):
        store.get("nope")


# ---- atomic writes ---------------------------------------------------------------------------------------------

def test_atomic_write_json_replaces_whole_file(tmp_path):
    path = tmp_path / "sub" / "data.json"
    atomic_write_json(path, {"a": 1})
    atomic_write_json(path, {"b": [1, 2, 3]})
    assert read_json(path) == {"b": [1, 2, 3]}
    assert [p.name for p in path.parent.iterdir()] == ["data.json"]  # no temp files left


def test_atomic_write_json_failure_keeps_old_file(tmp_path):
    path = tmp_path / "data.json"
    atomic_write_json(path, {"good": True})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"bad": object()})
    assert read_json(path) == {"good": True}
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_atomic_write_failure_during_rename_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "data.json"
    atomic_write_json(path, {"v": 1})

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(lrc.runs.os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_json(path, {"v": 2})
    monkeypatch.undo()
    assert read_json(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["data.json"]


def test_json_default_handles_tensors_and_paths(tmp_path):
    import numpy as np
    import torch

    atomic_write_json(tmp_path / "x.json", {"t": torch.tensor(1.5), "n": np.float32(2.0), "p": Path("/a/b")})
    assert read_json(tmp_path / "x.json") == {"t": 1.5, "n": 2.0, "p": "/a/b"}


def test_read_json_default_on_damage(tmp_path):
    (tmp_path / "bad.json").write_text('{"half": ')
    assert read_json(tmp_path / "bad.json", {"d": 1}) == {"d": 1}
    assert read_json(tmp_path / "missing.json") is None


# ---- events ----------------------------------------------------------------------------------------------------

def test_events_readable_while_being_written(store):
    run = store.create({"task": "sst2"}, run_id="live")
    run.append_event({"type": "start", "total_steps": 3})
    with open(run.events_path, "a", encoding="utf-8") as fh:
        fh.write('{"type": "step", "st')  # the writer is mid-line
        fh.flush()
        assert [e["type"] for e in run.read_events()] == ["start"]
        fh.write('ep": 1, "loss": 0.5}\n')
        fh.flush()
    events = run.read_events()
    assert [e["type"] for e in events] == ["start", "step"] and events[1]["loss"] == 0.5
    assert [e["type"] for e in run.read_events(start=1)] == ["step"]


def test_damaged_lines_are_skipped(store):
    run = store.create({"task": "sst2"}, run_id="damaged")
    run.append_event({"type": "start"})
    with open(run.events_path, "a", encoding="utf-8") as fh:
        fh.write("{not json at all\n")
        fh.write('["a list, not an event"]\n')
        fh.write("\n")
    run.append_event({"type": "step", "step": 1, "loss": float("nan")})
    with open(run.events_path, "ab") as fh:
        fh.write(b'{"type": "eval", "split": "\xff\xfe"}\n')  # invalid UTF-8 inside a line
        fh.write(b'{"type": "end", "sta')  # half-written last line
    events = run.read_events()
    assert [e["type"] for e in events] == ["start", "step", "eval"]
    assert events[1]["loss"] != events[1]["loss"]  # NaN survives the round trip


def test_read_events_of_a_run_without_events(store):
    run = store.create({"task": "sst2"}, run_id="empty")
    assert run.read_events() == []


# ---- status ----------------------------------------------------------------------------------------------------

def test_running_status_keeps_pid_and_alive_run_is_running(store):
    run = store.create({"task": "sst2"}, run_id="alive")
    run.set_status("running", started=1.0)
    info = run.status_info
    assert info["pid"] == os.getpid() and info["started"] == 1.0
    assert run.status == "running"
    run.set_status("completed", finished=2.0)
    assert run.status == "completed" and run.status_info["started"] == 1.0  # earlier fields kept


def test_running_status_with_dead_pid_reads_interrupted(store):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    run = store.create({"task": "sst2"}, run_id="dead")
    run.set_status("running")
    data = read_json(run.status_path)
    data["pid"] = proc.pid
    atomic_write_json(run.status_path, data)
    assert run.status == "interrupted"
    # a finished run stays what it was, whatever its pid
    data["status"] = "completed"
    atomic_write_json(run.status_path, data)
    assert run.status == "completed"


def test_missing_status_reads_unknown(store, tmp_path):
    run = Run(tmp_path / "nothing-here")
    assert run.status == "unknown" and run.config == {} and run.summary == {}


# ---- run ids ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["../x", "..", "../../etc", "/abs", "/tmp/run", "a/b", "a\\b", "", ".hidden",
                                 "-flag", "a..b", "x" * 200, "name with space", "tab\there", "nul\x00"])
def test_bad_run_ids_are_rejected(store, bad):
    with pytest.raises(LRCError, match="invalid run id"):
        validate_run_id(bad)
    with pytest.raises(LRCError):
        store.path_for(bad)
    if bad:  # an empty id means "make one up" to create()
        with pytest.raises(LRCError):
            store.create({"task": "sst2"}, run_id=bad)
    assert list(store.root.iterdir()) == []


def test_bad_run_ids_never_touch_outside(store, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    for bad in ("../outside", str(outside)):
        with pytest.raises(LRCError):
            store.delete(bad)
    assert (outside / "keep.txt").exists()


@pytest.mark.parametrize("good", ["lrc-sst2-20240101-120000", "run_1", "A.b-c"])
def test_good_run_ids(store, good):
    assert validate_run_id(good) == good
    assert store.path_for(good) == store.root / good


def test_symlink_out_of_the_store_is_refused(store, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    (store.root / "link").symlink_to(outside)
    with pytest.raises(LRCError, match="outside"):
        store.path_for("link")
    assert "link" not in {r.id for r in store.list()}


def test_delete_removes_run(store):
    run = store.create({"task": "sst2"}, run_id="gone")
    store.delete("gone")
    assert not run.path.exists()


def test_run_from_path_validates_the_name(tmp_path):
    assert run_from_path(tmp_path / "ok-run").path == tmp_path / "ok-run"
    with pytest.raises(LRCError):
        run_from_path(str(tmp_path / "a" / ".."))


def test_events_are_json_lines(store):
    run = store.create({"task": "sst2"}, run_id="lines")
    run.append_event({"type": "start", "path": Path("/x")})
    run.append_event({"type": "end"})
    lines = run.events_path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0]) == {"type": "start", "path": "/x"}
