"""`python -m lrc`: help for every subcommand, one-line errors with exit 2, and a tiny distill + predict."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from lrc.cli import build_parser, main
from lrc.runs import Run

from conftest import REPO

TINY = ["--student-layers", "2", "--student-hidden", "16", "--student-heads", "2", "--student-ffn", "32",
        "--batch-size", "4", "--max-seq-length", "16", "--device", "cpu", "--mixed-precision", "no",
        "--max-train-examples", "12", "--max-eval-examples", "4", "--log-every", "1"]


def subcommands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


@pytest.fixture(autouse=True)
def _no_glue_env(monkeypatch, tmp_path):
    # GLUE_DIR in the environment would change what --data-dir defaults to; runs/ must not land in the repo
    monkeypatch.delenv("GLUE_DIR", raising=False)
    monkeypatch.chdir(tmp_path)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "GLUE_DIR"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def test_module_help_exits_zero():
    out = subprocess.run([sys.executable, "-m", "lrc", "--help"], capture_output=True, text=True, cwd=REPO,
                         env=_env(), timeout=120)
    assert out.returncode == 0, out.stderr
    for name in ("teacher", "distill", "eval", "predict"):
        assert name in out.stdout


def test_every_subcommand_has_help(capsys):
    names = subcommands()
    assert {"teacher", "distill", "eval", "predict"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        assert "usage:" in capsys.readouterr().out


def test_distill_help_lists_the_ablation_flags(capsys):
    with pytest.raises(SystemExit):
        main(["distill", "--help"])
    out = capsys.readouterr().out
    for flag in ("--no-cos-nce", "--no-perturb", "--one-stage", "--layer-map", "--temperature", "--epsilon"):
        assert flag in out


def test_no_subcommand_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_ablation_flags_reach_the_config():
    from lrc.cli import _config

    args = build_parser().parse_args(["distill", "--task", "rte", "--no-cos-nce", "--no-perturb", "--one-stage",
                                      "--layer-map", "2,4", "--student-layers", "2", "--temperature", "2.5",
                                      "--preset", "lrc-paper", "--batch-size", "8"])
    cfg = _config(args)
    assert (cfg.use_cos_nce, cfg.perturb, cfg.two_stage) == (False, False, False)
    assert cfg.layer_map == [2, 4] and cfg.student.layers == 2 and cfg.temperature == 2.5
    assert cfg.task == "rte" and cfg.batch_size == 8 and cfg.student.hidden == 312  # the rest from the preset
    plain = _config(build_parser().parse_args(["distill", "--task", "rte"]))
    assert (plain.use_cos_nce, plain.perturb, plain.two_stage) == (True, True, True)


# ---- bad input: one error line, exit 2 ---------------------------------------------------------------------------

def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert "Traceback" not in err
    return errors[0]


def _run_status(path) -> str | None:
    return Run(path).status if (path / "status.json").exists() else None


def test_unknown_task(capsys, glue_dir, tmp_path):
    out = tmp_path / "r-unknown"
    code = main(["distill", "--task", "nosuchtask", "--data-dir", str(glue_dir), "--out", str(out)])
    assert code == 2
    assert "unknown task 'nosuchtask'" in _one_error_line(capsys)
    assert _run_status(out) in (None, "failed"), "a run that could not start must not stay queued"


def test_missing_data_dir(capsys, tmp_path):
    out = tmp_path / "r-missing"
    code = main(["distill", "--task", "sst2", "--data-dir", str(tmp_path / "no-glue"), "--out", str(out)])
    assert code == 2
    line = _one_error_line(capsys)
    assert "no-glue" in line and "does not exist" in line
    assert _run_status(out) in (None, "failed")


def test_batch_size_zero(capsys, glue_dir, tmp_path):
    code = main(["distill", "--task", "sst2", "--data-dir", str(glue_dir), "--batch-size", "0",
                 "--out", str(tmp_path / "r0")])
    assert code == 2
    assert "batch_size" in _one_error_line(capsys)
    assert not (tmp_path / "r0").exists(), "config errors are caught before a run folder is made"


def test_bad_layer_map_and_preset(capsys, glue_dir):
    assert main(["distill", "--task", "sst2", "--data-dir", str(glue_dir), "--layer-map", "a,b"]) == 2
    assert "--layer-map" in _one_error_line(capsys)
    assert main(["distill", "--task", "sst2", "--preset", "no-such-preset"]) == 2
    assert "unknown preset" in _one_error_line(capsys)
    assert main(["distill", "--data-dir", str(glue_dir)]) == 2
    assert "--task is required" in _one_error_line(capsys)


def test_student_deeper_than_teacher(capsys, shared_glue_dir, tiny_teacher_dir, tmp_path):
    out = tmp_path / "too-deep"
    args = ["distill", "--task", "sst2", "--data-dir", str(shared_glue_dir), "--teacher", str(tiny_teacher_dir),
            "--out", str(out), *TINY, "--student-layers", "6"]
    assert main(args) == 2
    line = _one_error_line(capsys)
    assert "6 layers but the teacher has only 4" in line
    assert _run_status(out) == "failed"


def test_predict_missing_model(capsys, tmp_path):
    assert main(["predict", "--model", str(tmp_path / "nope"), "hello"]) == 2
    assert "does not exist" in _one_error_line(capsys)


def test_error_in_a_real_process_has_no_traceback(glue_dir, tmp_path):
    out = subprocess.run([sys.executable, "-m", "lrc", "distill", "--task", "sst2", "--data-dir", str(glue_dir),
                          "--lr", "-1", "--out", str(tmp_path / "x")],
                         capture_output=True, text=True, cwd=tmp_path, env=_env(), timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and out.stderr.startswith("error: lr")


# ---- a tiny real run ---------------------------------------------------------------------------------------------

def test_tiny_distill_then_predict_and_eval(capsys, shared_glue_dir, tiny_teacher_dir, tmp_path):
    out = tmp_path / "tiny-run"
    code = main(["distill", "--task", "sst2", "--data-dir", str(shared_glue_dir), "--teacher", str(tiny_teacher_dir),
                 "--out", str(out), "--max-steps", "4", *TINY])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert f"run: {out}" in captured.out and "(completed)" in captured.out
    run = Run(out)
    assert run.status == "completed"
    assert run.summary["steps"] == 4 and run.summary["task"] == "sst2"
    assert (out / "student" / "config.json").exists() and (out / "student" / "README.md").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["batch_size"] == 4 and cfg["student"]["hidden"] == 16 and cfg["teacher"] == str(tiny_teacher_dir)

    assert main(["predict", "--model", str(out), "a good movie", "an awful plot"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for line, text in zip(lines, ("a good movie", "an awful plot")):
        label, probs, echoed = line.split("\t")
        assert label in ("negative", "positive") and echoed == text and "negative" in probs

    assert main(["predict", "--json", "--model", str(out / "student"), "fine"]) == 0
    obj = json.loads(capsys.readouterr().out)
    assert obj["label"] in ("negative", "positive")
    assert sum(obj["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)

    assert main(["predict", "--model", str(out), "   "]) == 2
    assert "empty" in _one_error_line(capsys)

    assert main(["eval", "--task", "sst2", "--data-dir", str(shared_glue_dir), "--model", str(out), "--json",
                 "--max-seq-length", "16", "--device", "cpu"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert set(metrics) == {"dev"} and 0.0 <= metrics["dev"]["accuracy"] <= 1.0


def test_existing_out_folder_is_refused(capsys, shared_glue_dir, tiny_teacher_dir, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "something").write_text("x")
    code = main(["distill", "--task", "sst2", "--data-dir", str(shared_glue_dir), "--teacher", str(tiny_teacher_dir),
                 "--out", str(out), "--max-steps", "1", *TINY])
    assert code == 2 and "already exists" in _one_error_line(capsys)
    assert [p.name for p in out.iterdir()] == ["something"]


def test_a_bad_flag_is_answered_before_torch_is_imported():
    """Validation comes first: a typo costs a fraction of a second, not the seconds torch takes to import."""
    import subprocess
    import sys

    code = ("import sys; from lrc.cli import main; rc = main(['distill', '--task', 'sst2', '--batch-size', '0']); "
            "print(rc, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert out.stdout.split() == ["2", "False"], out.stdout + out.stderr
    assert "batch_size" in out.stderr
