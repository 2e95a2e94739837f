"""How fast a default teacher fine-tunes on a CPU, and at what accuracy: today's settings against the faster paths.

    python bench/teacher.py --data-dir ../shared/glue --rows 8000          # SST-2, one epoch over 8,000 rows each

Each variant fine-tunes the bundled MiniLM on the same SST-2 rows for one epoch through lrc's own run path
(`lrc.teacher.run_teacher`, in a temporary run store), then scores the SST-2 dev set. Variants:

- `before`: what a default teacher used before the recipes (fp32, 64 tokens, batch 32, length-grouped batches);
- `bf16`: the same with bf16 autocast (on CPUs with native bf16: AVX512-BF16 or AMX);
- `bf16+len`: bf16 and the sequence length from the data (lrc.recipes: 99th percentile, here 48 tokens);
- `no-grouping`: `before` without length grouping (every batch padded to its longest row, rows in random order).

The table gives seconds per 1,000 rows, the full 67,349-row SST-2 epoch that implies, the speed-up over `before`,
and the dev accuracy after the epoch (same rows, same seed). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import prepare_environment  # noqa: E402

SST2_ROWS = 67349
VARIANTS = {
    "before": dict(mixed_precision="no", max_seq_length=64, length_grouping=True),
    "bf16": dict(mixed_precision="bf16", max_seq_length=64, length_grouping=True),
    "bf16+len": dict(mixed_precision="bf16", max_seq_length=None, length_grouping=True),
    "no-grouping": dict(mixed_precision="no", max_seq_length=64, length_grouping=False),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("GLUE_DIR"))
    p.add_argument("--rows", type=int, default=8000, help="SST-2 training rows per variant (one epoch)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args()
    data_dir = prepare_environment(p, args)

    import torch

    from lrc.config import DistillConfig
    from lrc.runs import RunStore
    from lrc.teacher import labels_only, run_teacher

    torch.set_num_threads(args.threads)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "runs")
        for name in [v.strip() for v in args.variants.split(",") if v.strip()]:
            cfg = labels_only(DistillConfig(task="sst2", data_dir=str(data_dir), max_train_examples=args.rows,
                                            epochs=1.0, lr=5e-5, batch_size=32, warmup_ratio=0.1, seed=0,
                                            log_every=50, device="cpu", pooling="cls", **VARIANTS[name]))
            run = store.create(cfg, run_id=f"teacher-{name}", kind="teacher")
            started = time.perf_counter()
            for _event in run_teacher(cfg, run):
                pass
            seconds = time.perf_counter() - started
            summary = run.summary
            rows = summary["train_examples"]
            results.append({"variant": name, "seconds": seconds, "rows": rows,
                            "s_per_1k": 1000 * seconds / rows, "epoch_min": seconds / rows * SST2_ROWS / 60,
                            "accuracy": summary["score"], "max_seq_length": summary["max_seq_length"]})
            print(f"{name}: {seconds:.1f} s, dev accuracy {summary['score']:.4f}", flush=True)
    base = next((r for r in results if r["variant"] == "before"), results[0])
    print(f"\n| variant | length | s / 1k rows | full SST-2 epoch (min) | speed-up | dev accuracy |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['variant']} | {r['max_seq_length']} | {r['s_per_1k']:.2f} | {r['epoch_min']:.1f} | "
              f"{base['seconds'] / r['seconds']:.2f}x | {r['accuracy']:.4f} |")
    print(json.dumps({"bench": "teacher", "rows": args.rows, "threads": args.threads, "results": results}))


if __name__ == "__main__":
    main()
