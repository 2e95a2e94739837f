"""Small fixtures for the app's tests, demos and screenshots: a tiny teacher, a tiny-run preset, a paced stand-in
runner, and `AppProcess` (the real server in a subprocess on a free local port).

    python -m tools.apptest --paced-step-s 0.05 --runs-dir ... --port ...    # the app with the paced runner

Not used by the app itself. A tiny teacher is a 2-layer, 64-wide BERT classifier with a fresh head and the
bundled MiniLM's tokenizer, saved like any fine-tuned model: distilling from it takes seconds on a CPU, which
is what a test of the plumbing (queue, streaming, predict) needs. Its predictions mean nothing.
"""

from __future__ import annotations

from pathlib import Path

import yaml

TINY_PRESET = {
    "description": "A run of a few seconds for tests: 64 examples, 32 tokens, 8 steps.",
    "max_train_examples": 64,
    "max_eval_examples": 64,
    "max_seq_length": 32,
    "batch_size": 16,
    "epochs": 2,
    "lr": 1.0e-4,
    "teacher_epochs": 1,
    "teacher_max_train_examples": 64,  # a default teacher takes every row unless capped: a test's must be small
    "teacher_batch_size": 16,
    "log_every": 1,
    "student": {"layers": 2, "hidden": 64, "heads": 2, "ffn": 128, "init": "auto"},
}


def write_preset(path: str | Path, **changes) -> Path:
    """Write the tiny preset (with changes; `student` is merged) as YAML and return its path."""
    data = {**TINY_PRESET, **{k: v for k, v in changes.items() if k != "student"}}
    data["student"] = {**TINY_PRESET["student"], **changes.get("student", {})}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def make_tiny_teacher(path: str | Path, task: str = "sst2", layers: int = 2, hidden: int = 64, seed: int = 0) -> Path:
    """Save a tiny randomly initialised BERT classifier for `task` (with the bundled tokenizer) at `path`."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from lrc.models import bundled_teacher_path
    from lrc.tasks import get_task

    spec = get_task(task)
    path = Path(path)
    if (path / "config.json").exists():
        return path
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_teacher_path()))
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
        intermediate_size=hidden * 2, max_position_embeddings=128, num_labels=spec.num_labels,
        problem_type="regression" if spec.is_regression else "single_label_classification",
    )
    if not spec.is_regression:
        config.id2label = dict(enumerate(spec.label_names))
        config.label2id = {n: i for i, n in enumerate(spec.label_names)}
    model = BertForSequenceClassification(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


_POSITIVE = ["a warm, funny and moving film", "great acting and a clever script", "i loved every minute of it",
             "a gorgeous, witty movie", "the best comedy of the year", "smart, tender and beautifully shot",
             "an absolute delight", "wonderful performances all round"]
_NEGATIVE = ["a dull and lifeless mess", "the jokes fall flat", "i was bored from start to finish",
             "a clumsy, tedious film", "the worst script in years", "flat characters and a silly plot",
             "an ugly waste of time", "painfully slow and pointless"]


def write_tiny_glue(root: str | Path, train: int = 64, dev: int = 32) -> Path:
    """A GLUE-layout folder with a small synthetic SST-2 (SST-2/train.tsv, SST-2/dev.tsv) for offline tests."""
    root = Path(root)
    folder = root / "SST-2"
    folder.mkdir(parents=True, exist_ok=True)

    def rows(n: int, offset: int) -> str:
        lines = ["sentence\tlabel"]
        for i in range(n):
            pool, label = (_POSITIVE, 1) if (i + offset) % 2 == 0 else (_NEGATIVE, 0)
            text = f"{pool[(i // 2 + offset) % len(pool)]} {'' if i < len(pool) * 2 else i}".strip()
            lines.append(f"{text}\t{label}")
        return "\n".join(lines) + "\n"

    (folder / "train.tsv").write_text(rows(train, 0), encoding="utf-8")
    (folder / "dev.tsv").write_text(rows(dev, 1), encoding="utf-8")
    return root


def paced_runner(cfg, run, should_stop, store) -> None:
    """Stands in for lrc's pipeline where a test needs a run that trains for a known time without using the CPU:
    a step event every LRC_PACED_STEP_S seconds (default 0.05) for `max_steps` steps (default 200), or until
    stopped, written like the pipeline writes them. No model is saved."""
    import os
    import time

    pace = float(os.environ.get("LRC_PACED_STEP_S", "0.05"))
    total = int(cfg.max_steps or 200)
    run.set_status("running", started=time.time())
    run.append_event({"type": "start", "total_steps": total, "stage1_steps": total, "device": "cpu"})
    step = 0
    while step < total and not should_stop():
        step += 1
        run.append_event({"type": "step", "stage": 1, "step": step, "total_steps": total, "loss": 1.0 / step,
                          "cos_nce": 1.0 / step, "samples_per_s": 100.0, "elapsed": step * pace})
        time.sleep(pace)
    status = "completed" if step >= total else "stopped"
    run.append_event({"type": "end", "status": status, "step": step, "message": f"paced run ended at step {step}"})
    run.set_status(status, finished=time.time())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AppProcess:
    """`python app.py` in a subprocess on a free local port; `url` once it answers. Use as a context manager."""

    def __init__(self, runs_dir: str | Path, data_dir: str | Path | None = None, preset: str | Path | None = None,
                 teacher: str | Path | None = None, log_path: str | Path | None = None, startup_timeout: float = 120,
                 paced_step_s: float | None = None, env: dict[str, str] | None = None):
        """`paced_step_s`: serve with `paced_runner` at that pace instead of lrc's pipeline; `env`: extra
        environment for the server (operator settings such as LRC_MAX_UPLOAD_MB)."""
        self.args = ["--runs-dir", str(runs_dir), "--host", "127.0.0.1"]
        for flag, value in (("--data-dir", data_dir), ("--preset", preset), ("--teacher", teacher)):
            if value is not None:
                self.args += [flag, str(value)]
        self.paced_step_s = paced_step_s
        self.extra_env = dict(env or {})
        self.log_path = Path(log_path or Path(runs_dir).parent / "app.log")
        self.startup_timeout = startup_timeout
        self.proc = None
        self.url = ""

    def __enter__(self) -> "AppProcess":
        import os
        import subprocess
        import sys
        import time
        import urllib.request

        root = Path(__file__).resolve().parent.parent
        port = free_port()
        env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1"),
               "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONUNBUFFERED": "1", **self.extra_env}
        entry = [str(root / "app.py")]
        if self.paced_step_s is not None:
            entry = ["-m", "tools.apptest"]
            env["LRC_PACED_STEP_S"] = str(self.paced_step_s)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen([sys.executable, *entry, "--port", str(port), *self.args],
                                     cwd=root, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.url = f"http://127.0.0.1:{port}/"
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the app exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.__exit__(None, None, None)
        raise RuntimeError(f"the app did not answer on {self.url} within {self.startup_timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def __exit__(self, *exc) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except Exception:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


if __name__ == "__main__":  # the real server with the paced runner (AppProcess(paced_step_s=...))
    import sys

    from studio.server import main

    main(sys.argv[1:], runner=paced_runner)
