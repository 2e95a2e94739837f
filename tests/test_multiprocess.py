"""Data-parallel runs: 2 CPU processes (gloo, launched by torchrun) match one process on the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lrc.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _args(glue: Path, teacher: Path, out: Path, batch: int) -> list[str]:
    # dropout 0 and no length grouping: then the two runs see the same global batches and the same arithmetic
    return ["distill", "--task", "sst2", "--data-dir", str(glue), "--teacher", str(teacher), "--out", str(out),
            "--max-train-examples", "32", "--max-eval-examples", "8", "--max-seq-length", "16",
            "--student-layers", "2", "--student-hidden", "16", "--student-heads", "2", "--student-ffn", "32",
            "--student-init", "random", "--student-dropout", "0", "--no-length-grouping", "--device", "cpu",
            "--mixed-precision", "no", "--max-steps", "6", "--stage1-fraction", "0.5", "--log-every", "1",
            "--seed", "0", "--lr", "1e-3", "--batch-size", str(batch)]


def _steps(run: Path) -> list[dict]:
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    return [e for e in events if e["type"] == "step"]


@pytest.mark.timeout(600)
def test_two_processes_match_one_process_of_the_same_global_batch(shared_glue_dir, tiny_teacher_dir, tmp_path):
    two, one = tmp_path / "runs" / "two", tmp_path / "runs" / "one"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "lrc", *_args(shared_glue_dir, tiny_teacher_dir, two, 4)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert cli_main(_args(shared_glue_dir, tiny_teacher_dir, one, 8)) == 0

    start = next(json.loads(x) for x in (two / "events.jsonl").read_text().splitlines() if '"start"' in x)
    assert start["num_processes"] == 2
    a, b = _steps(one), _steps(two)
    assert [e["step"] for e in b] == list(range(1, 7)), "one writer: every step logged exactly once"
    for x, y in zip(a, b):
        for term in ("loss", "cos_nce", "lr"):
            if term in x:
                assert y[term] == pytest.approx(x[term], rel=1e-5, abs=1e-7), (x["step"], term)
    assert "hard" in b[-1] and b[-1]["hard"] == pytest.approx(a[-1]["hard"], rel=1e-5)
    wa, wb = load_file(str(one / "student" / "model.safetensors")), load_file(str(two / "student" / "model.safetensors"))
    for name in wa:
        torch.testing.assert_close(wb[name], wa[name], rtol=1e-4, atol=1e-5, msg=name)
    status = json.loads((two / "status.json").read_text())
    assert status["status"] == "completed"
    summary = json.loads((two / "summary.json").read_text())
    assert summary["metrics"] == json.loads((one / "summary.json").read_text())["metrics"]
