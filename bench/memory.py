"""The app's peak memory (RSS): idle with the bundled teacher loaded, and during a quick-cpu run.

    python bench/memory.py --data-dir ../shared/glue                # quick-cpu capped at 15 + 15 steps
    python bench/memory.py --data-dir ../shared/glue --full         # the whole quick-cpu run (125 steps)

`python app.py` runs in a subprocess on loopback with a temporary run store and is driven with gradio_client.
Its memory is read from /proc/<pid>/status: VmHWM (the kernel's peak resident set of the process) and VmRSS
sampled every 0.2 s (plus any child processes, of which the app normally has none):

1. **quick-cpu run.** A fresh app presses Distill with the quick-cpu preset and the default teacher: the
   bundled MiniLM is fine-tuned on the 2,000 examples first (1 epoch), then the 2-layer student is distilled
   (stage 1 and stage 2, perturbation on, dev evaluations at the stage boundary and at the end). By default the
   distillation is capped at 15 + 15 steps: batches, models and evaluation sets are the preset's, so memory
   reaches the same plateau as in the full 125 steps (`--full` checks that). VmHWM after the run is its peak.
2. **Idle with the teacher loaded.** A second, fresh app on the same store answers one `/predict` on that run
   (loading the fine-tuned MiniLM teacher and the student into its model cache), then sits idle for a few
   seconds; VmHWM and VmRSS are read then.

Targets (issue 5): idle <= 3 GiB, during a quick-cpu run <= 6 GiB. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

from bench.common import prepare_environment  # noqa: E402

GIB = 1024**3


def proc_kib(pid: int, field: str) -> int:
    """A `VmXXX:` line of /proc/<pid>/status in KiB (0 if the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


class Sampler(threading.Thread):
    """RSS of a process and its children every `every` seconds; the peak and the time series."""

    def __init__(self, pid: int, every: float = 0.2):
        super().__init__(daemon=True)
        import psutil

        self.proc = psutil.Process(pid)
        self.every, self.peak, self.series = every, 0, []
        self.phase = "idle"
        self.phase_peak: dict[str, int] = {}
        self.stop_event = threading.Event()
        self.start_time = time.perf_counter()

    def run(self) -> None:
        import psutil

        while not self.stop_event.is_set():
            try:
                rss = self.proc.memory_info().rss
                for child in self.proc.children(recursive=True):
                    try:
                        rss += child.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                break
            self.peak = max(self.peak, rss)
            self.phase_peak[self.phase] = max(self.phase_peak.get(self.phase, 0), rss)
            self.series.append((round(time.perf_counter() - self.start_time, 2), rss))
            time.sleep(self.every)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("GLUE_DIR"))
    p.add_argument("--full", action="store_true", help="the whole quick-cpu run instead of 15 + 15 steps")
    p.add_argument("--threads", type=int, default=1, help="OMP/MKL/NUMBA threads of the app (0: default)")
    p.add_argument("--idle-seconds", type=float, default=5.0)
    args = p.parse_args()
    data_dir = prepare_environment(p, args)
    import gradio
    import gradio_client
    from gradio_client import Client

    from tools.apptest import AppProcess

    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    runs_dir = work / "runs"
    settings = {} if args.full else {"stage1_steps": 15, "stage2_steps": 15}
    result: dict = {"bench": "memory", "settings": settings or "quick-cpu as is"}
    load_before = os.getloadavg()

    # 1. a quick-cpu run in a fresh app
    with AppProcess(runs_dir, data_dir=data_dir, log_path=work / "app-run.log", startup_timeout=180) as app:
        pid = app.proc.pid
        time.sleep(1.0)
        started = {"rss": proc_kib(pid, "VmRSS") * 1024, "hwm": proc_kib(pid, "VmHWM") * 1024}
        sampler = Sampler(pid)
        sampler.start()
        client = Client(app.url, verbose=False)
        t0 = time.perf_counter()
        job = client.submit(task="sst2", preset="quick-cpu", settings=settings, run_name="bench-memory",
                            api_name="/distill")
        final = None
        for state in job:
            sampler.phase = {"teacher": "teacher fine-tuning", "distill": "distillation"}.get(state.get("phase"),
                                                                                          "loading")
            if state.get("done"):
                final = state
        final = final or job.result(timeout=60)
        run_seconds = time.perf_counter() - t0
        time.sleep(0.5)
        sampler.stop_event.set()
        sampler.join()
        run_hwm = proc_kib(pid, "VmHWM") * 1024
        result["run"] = {
            "status": final.get("status"), "steps": final.get("step"), "seconds": run_seconds,
            "app_started_rss": started["rss"], "app_started_hwm": started["hwm"],
            "peak_vmhwm": run_hwm, "peak_sampled_rss": sampler.peak, "phase_peaks": sampler.phase_peak,
            "rss_after_run": proc_kib(pid, "VmRSS") * 1024,
            "score": (final.get("summary") or {}).get("score"),
        }
        result["rss_series"] = sampler.series[:: max(1, len(sampler.series) // 300)]

    # 2. idle with the teacher (and the student) loaded, in a fresh app
    with AppProcess(runs_dir, data_dir=data_dir, log_path=work / "app-idle.log", startup_timeout=180) as app:
        pid = app.proc.pid
        client = Client(app.url, verbose=False)
        time.sleep(1.0)
        before = proc_kib(pid, "VmRSS") * 1024
        _t, _s, _v, raw = client.predict("bench-memory", "a gorgeous, witty, seductive movie", "",
                                         api_name="/predict")
        time.sleep(args.idle_seconds)
        result["idle"] = {
            "rss_before_predict": before, "rss_idle_loaded": proc_kib(pid, "VmRSS") * 1024,
            "peak_vmhwm": proc_kib(pid, "VmHWM") * 1024, "teacher_params": raw["teacher"]["params"],
            "student_params": raw["student"]["params"],
        }

    import torch
    import transformers

    result.update({
        "device": f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
        "threads": args.threads or "default", "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "torch": torch.__version__, "transformers": transformers.__version__, "gradio": gradio.__version__,
        "gradio_client": gradio_client.__version__, "command": "python " + " ".join(sys.argv),
        "targets_gib": {"idle": 3, "run": 6},
    })
    r, i = result["run"], result["idle"]
    print(f"{result['device']}, app threads {result['threads']}; torch {torch.__version__}, "
          f"gradio {gradio.__version__}")
    print(f"{'measurement':<58}{'GiB':>7}{'target':>8}")
    rows = [
        ("app just started (no torch imported yet): RSS", r["app_started_rss"], None),
        ("idle, teacher + student loaded (after one Predict): RSS", i["rss_idle_loaded"], None),
        ("idle, teacher + student loaded: peak (VmHWM)", i["peak_vmhwm"], 3),
        (f"quick-cpu run ({r['steps']} distillation steps, {r['seconds']:.0f} s): peak (VmHWM)", r["peak_vmhwm"], 6),
    ]
    rows += [(f"  sampled peak while {phase}", v, None) for phase, v in r["phase_peaks"].items()]
    for name, value, target in rows:
        print(f"{name:<58}{value / GIB:>7.2f}{'' if target is None else f'<= {target}':>8}")
    print(json.dumps(result))
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
