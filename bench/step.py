"""Samples/s of one training step: plain KD, LRC without perturbation, full LRC; teacher live vs cached.

    python bench/step.py --data-dir ../shared/glue                       # CPU: bundled MiniLM teacher + 2-layer student
    python bench/step.py --paper-shapes --precision bf16 --device cuda   # GPU: BERT-base-shaped teacher, 4L/312 student

Every variant runs the same batches (same seed) in one process, alternating variants per round so that machine
noise hits them alike; the table reports the median over rounds. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

from lrc.config import DistillConfig, StudentConfig  # noqa: E402
from lrc.models import build_student, load_classifier, load_tokenizer, uniform_layer_map  # noqa: E402
from lrc.pipeline import load_data  # noqa: E402
from lrc.train import Distiller  # noqa: E402

VARIANTS = {
    "kd": dict(use_cos_nce=False, perturb=False, two_stage=False, alpha=0.0),
    "lrc-no-perturb": dict(perturb=False),
    "lrc": {},
}
# the same full-LRC step with torch's per-tensor loop AdamW instead of the fused one lrc uses (--adamw-loop)
LOOP_ADAMW = "lrc, loop AdamW"
# the same full-LRC step with the student's blocks under torch.compile (inductor; lrc.models.compile_blocks)
COMPILED = "lrc, compiled"


def make_teacher(args, task):
    if args.paper_shapes:
        cfg = BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                         num_labels=task.num_labels)
        return BertForSequenceClassification(cfg), None
    return load_classifier(None, task), None


def build(args, variant: str, cache: bool, data, tokenizer, teacher) -> Distiller:
    loop_adamw, compiled = variant == LOOP_ADAMW, variant == COMPILED
    variant = "lrc" if loop_adamw or compiled else variant
    student_shape = StudentConfig(4, 312, 12, 1200, "random") if args.paper_shapes else \
        StudentConfig(2, 384, 12, 1536, "auto")
    cfg = DistillConfig(
        task=args.task, batch_size=args.batch_size, max_seq_length=args.seq_len, max_steps=10**6, seed=0,
        device=args.device, mixed_precision=args.precision, teacher_cache=cache, student=student_shape,
        length_grouping=False, stage1_fraction=0.0, compile=compiled, **VARIANTS[variant],
    ).validate()
    layer_map = uniform_layer_map(student_shape.layers, teacher.config.num_hidden_layers)
    torch.manual_seed(0)
    student, _ = build_student(student_shape, teacher, data.task, layer_map)
    d = Distiller(cfg, data, tokenizer, student, teacher, layer_map)
    if loop_adamw:
        fused_adamw = torch.optim.AdamW
        torch.optim.AdamW = lambda params, **kw: fused_adamw(params, **{**kw, "fused": False, "foreach": False})
        try:
            d._prepare()
        finally:
            torch.optim.AdamW = fused_adamw
    else:
        d._prepare()
    return d


def time_steps(d: Distiller, batches, steps: int) -> float:
    """Seconds per step over `steps` steps (stage 2: the full loss), after one warm-up step."""
    d._train_step(batches[0], 2)
    if d.accelerator.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for i in range(steps):
        d._train_step(batches[i % len(batches)], 2)
    if d.accelerator.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sst2")
    p.add_argument("--data-dir", default=os.environ.get("GLUE_DIR"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=8, help="timed steps per variant per round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="no")
    p.add_argument("--paper-shapes", action="store_true")
    p.add_argument("--adamw-loop", action="store_true",
                   help="also time full LRC with torch's per-tensor loop AdamW (lrc uses the fused one)")
    p.add_argument("--compile", action="store_true",
                   help="also time full LRC under torch.compile (inductor); its compile time is reported apart")
    args = p.parse_args()
    os.environ.setdefault("LRC_CACHE_DIR", tempfile.mkdtemp(prefix="lrc-bench-cache-"))

    cfg = DistillConfig(task=args.task, data_dir=args.data_dir, max_train_examples=args.batch_size * 16,
                        max_eval_examples=8, max_seq_length=args.seq_len)
    data = load_data(cfg)
    tokenizer = load_tokenizer(None)
    teacher, _ = make_teacher(args, data.task)
    combos = [(v, c) for v in VARIANTS for c in (False, True)] + ([(LOOP_ADAMW, False)] if args.adamw_loop else []) \
        + ([(COMPILED, False)] if args.compile else [])
    distillers = {combo: build(args, *combo, data, tokenizer, teacher) for combo in combos}
    # identical batches for every variant, taken from a cached distiller so they carry the cache's row ids
    it = iter(distillers[("kd", True)].loader)
    batches = [next(it) for _ in range(4)]
    compile_seconds = None
    if args.compile:  # compiling happens on the first step of each new batch shape: pay it before timing
        start = time.perf_counter()
        for b in batches:
            distillers[(COMPILED, False)]._train_step(b, 2)
        compile_seconds = time.perf_counter() - start
    times: dict[tuple[str, bool], list[float]] = {c: [] for c in combos}
    for _round in range(args.rounds):
        for combo, d in distillers.items():
            times[combo].append(time_steps(d, batches, args.steps))
    rows = []
    base = statistics.median(times[("kd", False)])
    for combo in combos:
        sec = statistics.median(times[combo])
        rows.append({"variant": combo[0], "teacher_cache": combo[1], "sec_per_step": sec,
                     "samples_per_s": args.batch_size / sec, "vs_kd_uncached": sec / base})
    device = distillers[combos[0]].accelerator.device
    meta = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
        "torch": torch.__version__, "transformers": transformers.__version__, "batch_size": args.batch_size,
        "seq_len": args.seq_len, "precision": args.precision, "paper_shapes": args.paper_shapes,
        "command": "python " + " ".join(sys.argv), "compile_first_pass_s": compile_seconds,
    }
    print(f"{'variant':<18}{'cache':<7}{'s/step':>9}{'samples/s':>11}{'x kd(live)':>12}")
    for r in rows:
        print(f"{r['variant']:<18}{str(r['teacher_cache']):<7}{r['sec_per_step']:>9.3f}{r['samples_per_s']:>11.1f}"
              f"{r['vs_kd_uncached']:>12.2f}")
    if compile_seconds is not None:
        print(f"torch.compile: the first pass over the {len(batches)} batch shapes (compiling) took "
              f"{compile_seconds:.1f} s")
    print(json.dumps({"bench": "step", **meta, "rows": rows}))


if __name__ == "__main__":
    main()
