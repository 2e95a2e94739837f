"""How close a full-LRC training step gets to the device's limit, and where its time goes.

    python bench/roofline.py --data-dir ../shared/glue                                  # CPU, bundled teacher
    python bench/roofline.py --paper-shapes --precision bf16 --device cuda --batch-sizes 32,256   # a GPU

Three measurements in one process:
1. the device's peak matmul rate, measured (not taken from a data sheet) with large square matmuls in the
   step's compute dtype (bf16 under --precision bf16, else fp32);
2. the FLOPs of one full-LRC step (teacher forward, clean and perturbed student passes, backward), counted by
   torch's FlopCounterMode (matmuls and attention; elementwise work is not counted, so the fraction is a
   lower bound on how busy the device is), divided by the measured seconds per step: the achieved rate as a
   fraction of the peak;
3. the PyTorch profiler's top operators by self time over a few steps, and on a GPU the peak memory
   (torch.cuda.max_memory_allocated) of a step at each batch size.
Prints a table and one JSON line. Reuses bench/step.py's model shapes and Distiller setup.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import transformers  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from lrc.config import DistillConfig  # noqa: E402
from lrc.models import load_tokenizer  # noqa: E402
from lrc.pipeline import load_data  # noqa: E402
from step import build, make_teacher  # noqa: E402

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "no": torch.float32}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_matmul_flops(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """FLOP/s of an n x n by n x n matmul, best of `repeats` timed runs (the device's practical ceiling)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up: kernel selection, allocator
    _sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


class _NoModuleTracking:
    """Stands in for FlopCounterMode's module tracker, whose backward hooks break the perturbation's
    torch.autograd.grad call; we only need the step's total, not a per-module breakdown."""

    parents = {"Global"}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def step_flops(d, batch) -> int:
    """FLOPs of one stage-2 step as torch counts them (matmuls, attention)."""
    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModuleTracking()
    with counter:
        d._train_step(batch, 2)
    return counter.get_total_flops()


def seconds_per_step(d, batches, steps: int) -> float:
    device = d.accelerator.device
    d._train_step(batches[0], 2)
    _sync(device)
    start = time.perf_counter()
    for i in range(steps):
        d._train_step(batches[i % len(batches)], 2)
    _sync(device)
    return (time.perf_counter() - start) / steps


def top_ops(d, batches, steps: int, limit: int) -> list[dict]:
    """The profiler's operators with the most self time (device time on a GPU, CPU time otherwise)."""
    device = d.accelerator.device
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for i in range(steps):
            d._train_step(batches[i % len(batches)], 2)
        _sync(device)
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key) > 0]
    total = sum(getattr(e, key) for e in events) or 1
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    return [{"op": e.key, "self_ms_per_step": getattr(e, key) / 1000 / steps, "share": getattr(e, key) / total,
             "calls_per_step": e.count / steps} for e in events[:limit]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sst2")
    p.add_argument("--data-dir", default=os.environ.get("GLUE_DIR"))
    p.add_argument("--batch-sizes", default="32", help="comma-separated; the first one is profiled")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--steps", type=int, default=10, help="timed steps per batch size")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="no", choices=sorted(DTYPES))
    p.add_argument("--paper-shapes", action="store_true")
    p.add_argument("--matmul-size", type=int, default=0, help="peak matmul size (default 8192 GPU, 2048 CPU)")
    p.add_argument("--top", type=int, default=12)
    args = p.parse_args()
    try:
        sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    except ValueError:
        p.error(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}")
    if not sizes or min(sizes) < 1:
        p.error("--batch-sizes needs at least one size, each >= 1")
    if args.steps < 1:
        p.error("--steps must be >= 1")
    os.environ.setdefault("LRC_CACHE_DIR", tempfile.mkdtemp(prefix="lrc-bench-cache-"))

    cfg = DistillConfig(task=args.task, data_dir=args.data_dir, max_train_examples=max(sizes) * 4,
                        max_eval_examples=8, max_seq_length=args.seq_len)
    data = load_data(cfg)
    tokenizer = load_tokenizer(None)
    teacher, _ = make_teacher(args, data.task)

    rows, ops, device = [], [], None
    for i, batch_size in enumerate(sizes):
        args.batch_size = batch_size
        d = build(args, "lrc", False, data, tokenizer, teacher)
        device = d.accelerator.device
        it = iter(d.loader)
        batches = [next(it) for _ in range(2)]
        flops = step_flops(d, batches[0])
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        sec = seconds_per_step(d, batches, args.steps)
        peak_mem = torch.cuda.max_memory_allocated() if device.type == "cuda" else None
        rows.append({"batch_size": batch_size, "sec_per_step": sec, "samples_per_s": batch_size / sec,
                     "step_gflop": flops / 1e9, "achieved_tflops": flops / sec / 1e12,
                     "peak_memory_gib": peak_mem / 2**30 if peak_mem is not None else None})
        if i == 0:
            ops = top_ops(d, batches, min(args.steps, 5), args.top)
        del d
        if device.type == "cuda":
            torch.cuda.empty_cache()

    n = args.matmul_size or (8192 if device.type == "cuda" else 2048)
    dtype = DTYPES[args.precision] if device.type == "cuda" else torch.float32
    peak = peak_matmul_flops(device, dtype, n, repeats=10)
    for r in rows:
        r["fraction_of_peak"] = r["achieved_tflops"] * 1e12 / peak
    meta = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else
        f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "torch": torch.__version__, "transformers": transformers.__version__, "precision": args.precision,
        "seq_len": args.seq_len, "paper_shapes": args.paper_shapes,
        "peak_matmul": {"n": n, "dtype": str(dtype).replace("torch.", ""), "tflops": peak / 1e12},
        "command": "python " + " ".join(sys.argv),
    }
    print(f"device: {meta['device']}; peak {meta['peak_matmul']['dtype']} matmul ({n}x{n}): {peak / 1e12:.3f} TFLOP/s")
    print(f"{'batch':>6}{'s/step':>9}{'samples/s':>11}{'GFLOP/step':>12}{'TFLOP/s':>9}{'of peak':>9}{'peak mem':>10}")
    for r in rows:
        mem = f"{r['peak_memory_gib']:.2f} GiB" if r["peak_memory_gib"] is not None else "n/a"
        print(f"{r['batch_size']:>6}{r['sec_per_step']:>9.3f}{r['samples_per_s']:>11.1f}{r['step_gflop']:>12.1f}"
              f"{r['achieved_tflops']:>9.3f}{r['fraction_of_peak']:>9.1%}{mem:>10}")
    print(f"\ntop operators by self {'device' if device.type == 'cuda' else 'CPU'} time "
          f"(full-LRC step, batch {sizes[0]}):")
    print(f"{'operator':<44}{'ms/step':>9}{'share':>8}{'calls':>7}")
    for o in ops:
        print(f"{o['op'][:43]:<44}{o['self_ms_per_step']:>9.2f}{o['share']:>8.1%}{o['calls_per_step']:>7.0f}")
    print(json.dumps({"bench": "roofline", **meta, "rows": rows, "top_ops": ops}))


if __name__ == "__main__":
    main()
