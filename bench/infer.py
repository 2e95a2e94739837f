"""Teacher vs student inference: latency at batch 1 (p50/p95), throughput at batch 64, next to FLOP and size ratios.

    python bench/infer.py                          # CPU: bundled MiniLM (6L/384) vs a 2-layer/384 student
    python bench/infer.py --paper-shapes           # BERT-base shape (12L/768) vs the paper's 4L/312 student
    python bench/infer.py --teacher runs/teacher-sst2 --student runs/lrc-sst2   # your own models

The paper reports 9.6x faster and 7.5x smaller for 4L/312 vs BERT-base. Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

from lrc.models import load_classifier, load_tokenizer  # noqa: E402


def encoder_flops(config, seq_len: int) -> float:
    """Forward FLOPs per sequence of the encoder (multiply-add = 2 FLOPs): projections, FFN, attention scores."""
    d, f, n = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_token_layer = 2 * (4 * d * d + 2 * d * f) + 2 * 2 * seq_len * d
    return float(n * per_token_layer * seq_len)


def shaped(layers: int, hidden: int, heads: int, ffn: int) -> BertForSequenceClassification:
    return BertForSequenceClassification(BertConfig(hidden_size=hidden, num_hidden_layers=layers,
                                                    num_attention_heads=heads, intermediate_size=ffn))


def latency_ms(model, inputs, repeats: int, device) -> list[float]:
    out = []
    with torch.inference_mode():
        for _ in range(3):
            model(**inputs)
        for _ in range(repeats):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            model(**inputs)
            if device.type == "cuda":
                torch.cuda.synchronize()
            out.append((time.perf_counter() - start) * 1000)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--teacher", default=None)
    p.add_argument("--student", default=None)
    p.add_argument("--paper-shapes", action="store_true")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--throughput-batches", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if args.paper_shapes:
        teacher, student = shaped(12, 768, 12, 3072), shaped(4, 312, 12, 1200)
        names = ("BERT-base shape 12L/768", "4L/312 (paper)")
    else:
        teacher = load_classifier(args.teacher) if args.teacher else load_classifier(None)
        student = load_classifier(args.student) if args.student else shaped(2, 384, 12, 1536)
        names = (args.teacher or "bundled MiniLM 6L/384", args.student or "2L/384 student")
    tok = load_tokenizer(None)
    text = "a gorgeous , witty , seductive movie " * 64
    results = {}
    for name, model in zip(names, (teacher, student)):
        model.to(device=device, dtype=dtype).eval()
        one = tok([text], truncation=True, max_length=args.seq_len, return_tensors="pt").to(device)
        many = tok([text] * 64, truncation=True, max_length=args.seq_len, return_tensors="pt").to(device)
        lat = latency_ms(model, one, args.repeats, device)
        thr = latency_ms(model, many, args.throughput_batches, device)
        results[name] = {
            "p50_ms": statistics.median(lat), "p95_ms": sorted(lat)[int(0.95 * (len(lat) - 1))],
            "throughput_per_s": 64 / (statistics.median(thr) / 1000),
            "params": sum(p.numel() for p in model.parameters()),
            "flops_per_seq": encoder_flops(model.config, args.seq_len),
        }
    t, s = (results[n] for n in names)
    ratios = {
        "speedup_batch1": t["p50_ms"] / s["p50_ms"], "speedup_batch64": s["throughput_per_s"] / t["throughput_per_s"],
        "flop_ratio": t["flops_per_seq"] / s["flops_per_seq"], "size_ratio": t["params"] / s["params"],
    }
    ratios["speedup_share_of_flop_ratio"] = ratios["speedup_batch64"] / ratios["flop_ratio"]
    print(f"{'model':<28}{'p50 ms':>9}{'p95 ms':>9}{'seq/s @64':>11}{'params':>12}{'GFLOP/seq':>11}")
    for n in names:
        r = results[n]
        print(f"{n:<28}{r['p50_ms']:>9.1f}{r['p95_ms']:>9.1f}{r['throughput_per_s']:>11.1f}{r['params']:>12,}"
              f"{r['flops_per_seq'] / 1e9:>11.2f}")
    print("ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    meta = {"device": torch.cuda.get_device_name() if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
            "torch": torch.__version__, "transformers": transformers.__version__, "seq_len": args.seq_len,
            "dtype": args.dtype, "command": "python " + " ".join(sys.argv)}
    print(json.dumps({"bench": "infer", **meta, "models": results, "ratios": ratios}))


if __name__ == "__main__":
    main()
