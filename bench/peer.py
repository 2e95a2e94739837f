"""lrc against a peer on the same distillation work: TextBrewer's GeneralDistiller, and a plain PyTorch loop.

    python bench/peer.py --data-dir ../shared/glue                 # CPU, 1 thread (the default)
    python bench/peer.py --device cuda --threads 0                 # on a GPU (threads 0: leave torch's default)

TextBrewer (0.2.1, 2021) is not a project dependency. Its metadata asks for `tensorboard`, which the benchmark
does not use, so install it without dependencies: `pip install --no-deps textbrewer tensorboardX protobuf`
(tensorboardX and protobuf are all its import needs; it then runs unchanged on torch 2.13 and transformers 5).
Without it the table compares lrc with the plain loop only and says why.

Same teacher (the bundled MiniLM, 6L/384, with a fresh SST-2 head: a step costs the same fine-tuned or not),
same 2-layer/384 student (initialised from teacher layers 3 and 6, one copy per side), same SST-2 batches
(batch 32, up to 64 tokens, padded to a multiple of 8), same optimiser (AdamW, lr 1e-4, weight decay 0.01 off
biases and LayerNorms, linear schedule, gradient clipping at 1.0). Three loss setups, each run by three sides:

    kd    soft KD (T = 1.1) + 3 x hard-label cross-entropy                      <- issue 5's target: lrc >= peer
    mse   kd + MSE between projected student layers 1, 2 and teacher layers 3, 6 (every real token)
    cos   kd + a cosine loss on the same layer pairs: DistilBERT's 1 - cos for TextBrewer and the plain loop,
          lrc's COS-NCE (1 - cos to its own teacher token plus in-batch negatives: more work) for lrc, which
          has no plain-cosine hidden-state loss

    lrc         lrc.train.Distiller._train_step (one_stage, no perturbation, no teacher cache), as Distiller.run
                calls it on CPU (plus its per-step finiteness check)
    textbrewer  textbrewer.GeneralDistiller.train(num_steps=...), its own loop; kd_loss_type "ce" with weight
                T^2 (same gradient as lrc's KL x T^2), hard_label_weight 3 (the student's own CE output),
                intermediate_matches "hidden_mse" / "cos" with a linear projection; its checkpoint save at the
                end of train() is switched off (lrc's timed steps save nothing either)
    plain       a straightforward PyTorch loop of the same losses (teacher under no_grad, student, losses,
                backward, clip, step), reading loss.item() each step as a logging loop would

Every side runs the same batches. After one untimed warm-up step per side, the sides alternate within a round
(their order rotates every round), each timing `--steps` steps a round; the table gives the medians over the
rounds of wall-clock and process CPU seconds per step (CPU time is what a busy neighbour on a shared machine
disturbs least) and lrc's speed relative to each side (the ratio of the medians, with the range of the per-round
ratios). Prints a table and one JSON line.
"""

from __future__ import annotations

import argparse
import copy
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
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from torch import nn  # noqa: E402

from lrc.config import DistillConfig, StudentConfig  # noqa: E402
from lrc.data import make_loader, tokenize  # noqa: E402
from lrc.models import Projections, build_student, load_classifier, load_tokenizer, uniform_layer_map  # noqa: E402
from lrc.pipeline import load_data  # noqa: E402
from lrc.train import Distiller  # noqa: E402

T = 1.1
GAMMA = 3.0
LR = 1e-4
WEIGHT_DECAY = 0.01
MAX_GRAD_NORM = 1.0
MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")

LRC_VARIANTS = {
    "kd": dict(use_cos_nce=False, alpha=0.0),
    "mse": dict(distance="mse"),
    "cos": dict(distance="angular"),  # COS-NCE, in-batch negatives, every real token
}
SIDES = ("lrc", "textbrewer", "plain")


def param_groups(modules: list[nn.Module]):
    """AdamW groups as lrc makes them: weight decay off biases and LayerNorm weights."""
    decay, no_decay = [], []
    for module in modules:
        for name, p in module.named_parameters():
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
    return [{"params": decay, "weight_decay": WEIGHT_DECAY}, {"params": no_decay, "weight_decay": 0.0}]


def linear_schedule(optimizer, total: int = 10**6):
    return transformers.get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=total)


# ---- lrc ------------------------------------------------------------------------------------------------------------

class LrcSide:
    def __init__(self, variant, args, data, tokenizer, student, teacher, layer_map):
        shape = StudentConfig(2, 384, 12, 1536, "auto")
        cfg = DistillConfig(
            task=args.task, batch_size=args.batch_size, max_seq_length=args.seq_len, max_steps=10**6, seed=0,
            device=args.device, mixed_precision="no", student=shape, length_grouping=False, two_stage=False,
            stage1_fraction=0.0, perturb=False, teacher_cache=False, lr=LR, weight_decay=WEIGHT_DECAY,
            warmup_ratio=0.0, max_grad_norm=MAX_GRAD_NORM, temperature=T, gamma=GAMMA, beta=1.0,
            **LRC_VARIANTS[variant],
        ).validate()
        self.d = Distiller(cfg, data, tokenizer, student, teacher, layer_map)
        self.d._prepare()
        self.on_cpu = self.d.accelerator.device.type == "cpu"

    def step(self, batch):
        terms = self.d._train_step(batch, 2)
        if self.on_cpu:  # Distiller.run checks the loss every step on CPU
            torch.isfinite(terms["loss"]).item()
        return terms

    def time(self, batches, steps: int) -> tuple[float, float]:
        return timed_loop(self.step, batches, steps, self.d.accelerator.device)


# ---- TextBrewer -----------------------------------------------------------------------------------------------------

def _tb_adaptor(batch, out):
    result = {"logits": out.logits, "losses": out.loss}
    if out.hidden_states is not None:  # the hidden-state losses skip padding, as lrc's and the plain loop's do
        result["hidden"] = out.hidden_states
        result["inputs_mask"] = batch["attention_mask"]
    return result


class TextBrewerSide:
    def __init__(self, variant, args, student, teacher, layer_map, device):
        import textbrewer
        from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig

        self.textbrewer = textbrewer
        self.device = device
        self.student = student.to(device)
        matches = []
        if variant in ("mse", "cos"):
            loss = "hidden_mse" if variant == "mse" else "cos"
            matches = [{"layer_T": n, "layer_S": m, "feature": "hidden", "loss": loss, "weight": 1,
                        "proj": ["linear", 384, 384, {}]} for m, n in enumerate(layer_map, start=1)]
        self.forward_args = {"output_hidden_states": True} if matches else {}
        out_dir = tempfile.mkdtemp(prefix="peer-textbrewer-")  # TrainingConfig makes it; nothing is saved in it
        tcfg = TrainingConfig(device=str(device), log_dir=None, output_dir=out_dir, ckpt_steps=10**9)
        os.rmdir(out_dir)
        dcfg = DistillationConfig(temperature=T, kd_loss_type="ce", kd_loss_weight=T * T, hard_label_weight=GAMMA,
                                  intermediate_matches=matches)
        self.distiller = GeneralDistiller(tcfg, dcfg, teacher, self.student, _tb_adaptor, _tb_adaptor)
        self.distiller.save_and_callback = lambda *a, **k: None  # no checkpoint file at the end of train()
        self.optimizer = torch.optim.AdamW(param_groups([self.student]), lr=LR, fused=True)  # as lrc builds it
        self.stamps: list[tuple[float, float]] = []

    def _post(self, batch):
        self.stamps.append((time.perf_counter(), time.process_time()))
        return {k: batch[k] for k in (*MODEL_INPUTS, "labels") if k in batch}

    def time(self, batches, steps: int) -> tuple[float, float]:
        """One train() call of `steps` steps, timed from the start of its first step to its return."""
        # train() adds the projections' parameters to the optimiser it is given: take last call's out again
        # (their AdamW state stays, keyed by parameter, so every call continues the same optimiser)
        del self.optimizer.param_groups[2:]
        self.stamps = []
        self.distiller.train(self.optimizer, [batches[i % len(batches)] for i in range(steps)], num_steps=steps,
                             scheduler_class=linear_schedule, scheduler_args={}, max_grad_norm=MAX_GRAD_NORM,
                             batch_postprocessor=self._post, **self.forward_args)
        sync(self.device)
        wall, cpu = time.perf_counter(), time.process_time()
        return (wall - self.stamps[0][0]) / steps, (cpu - self.stamps[0][1]) / steps


# ---- a plain PyTorch loop -------------------------------------------------------------------------------------------

class PlainSide:
    def __init__(self, variant, student, teacher, layer_map, device):
        self.variant, self.layer_map, self.device = variant, layer_map, device
        self.student, self.teacher = student.to(device), teacher
        self.hidden = variant in ("mse", "cos")
        self.proj = Projections(384, 384, len(layer_map)).to(device) if self.hidden else nn.Module()
        self.optimizer = torch.optim.AdamW(param_groups([self.student, self.proj]), lr=LR, fused=True)  # as lrc builds it
        self.scheduler = linear_schedule(self.optimizer)
        self.params = list(self.student.parameters()) + list(self.proj.parameters())

    def step(self, batch) -> float:
        inputs = {k: batch[k].to(self.device) for k in MODEL_INPUTS if k in batch}
        labels = batch["labels"].to(self.device)
        self.student.train()
        with torch.no_grad():
            t = self.teacher(**inputs, output_hidden_states=self.hidden)
        s = self.student(**inputs, output_hidden_states=self.hidden)
        loss = F.kl_div(F.log_softmax(s.logits / T, -1), F.log_softmax(t.logits / T, -1), reduction="batchmean",
                        log_target=True) * T * T + GAMMA * F.cross_entropy(s.logits, labels)
        if self.hidden:
            mask = inputs["attention_mask"].to(s.logits.dtype)
            for m, n in enumerate(self.layer_map):
                sp, th = self.proj(m, s.hidden_states[m + 1]), t.hidden_states[n]
                per_token = (sp - th).pow(2).mean(-1) if self.variant == "mse" else \
                    1.0 - F.cosine_similarity(sp, th, dim=-1)
                loss = loss + (per_token * mask).sum() / mask.sum()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, MAX_GRAD_NORM)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def time(self, batches, steps: int) -> tuple[float, float]:
        return timed_loop(self.step, batches, steps, self.device)


def timed_loop(step, batches, steps: int, device) -> tuple[float, float]:
    """Wall and CPU seconds per step over `steps` steps (CPU time: what the process itself spent, which a busy
    neighbour on the other core disturbs much less than the wall clock)."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(steps):
        step(batches[i % len(batches)])
    sync(device)
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def textbrewer_status() -> tuple[str | None, str | None]:
    """(version, None) when TextBrewer imports, else (None, the error)."""
    try:
        import textbrewer

        return textbrewer.__version__, None
    except Exception as exc:  # ImportError, or an old module failing on a new torch / transformers
        return None, f"{type(exc).__name__}: {exc}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sst2")
    p.add_argument("--data-dir", default=os.environ.get("GLUE_DIR"))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--steps", type=int, default=3, help="timed steps per side per round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--batches", type=int, default=6, help="distinct batches, cycled")
    p.add_argument("--variants", default="kd,mse,cos")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: leave the default)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "cuda" else "cpu")
    tb_version, tb_error = textbrewer_status()
    sides = [s for s in SIDES if s != "textbrewer" or tb_version]
    if tb_error:
        print(f"TextBrewer is not usable here ({tb_error}); comparing lrc with the plain loop only", file=sys.stderr)

    cfg = DistillConfig(task=args.task, data_dir=args.data_dir, max_train_examples=args.batch_size * 16,
                        max_eval_examples=8, max_seq_length=args.seq_len)
    data = load_data(cfg)
    tokenizer = load_tokenizer(None)
    teacher = load_classifier(None, data.task).to(device).eval()
    teacher.requires_grad_(False)
    shape = StudentConfig(2, 384, 12, 1536, "auto")
    layer_map = uniform_layer_map(shape.layers, teacher.config.num_hidden_layers)
    torch.manual_seed(0)
    base_student, how = build_student(shape, teacher, data.task, layer_map)
    loader = make_loader(tokenize(data.train, tokenizer, args.seq_len), tokenizer, args.batch_size, shuffle=True,
                         seed=0)
    it = iter(loader)
    batches = [next(it) for _ in range(args.batches)]
    if device.type == "cuda":
        batches = [{k: v.to(device) for k, v in b.items()} for b in batches]

    load_before = os.getloadavg()
    rows = []
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        built = {}
        for side in sides:
            student = copy.deepcopy(base_student)
            if side == "lrc":
                built[side] = LrcSide(variant, args, data, tokenizer, student, teacher, layer_map)
            elif side == "textbrewer":
                built[side] = TextBrewerSide(variant, args, student, teacher, layer_map, device)
            else:
                built[side] = PlainSide(variant, student, teacher, layer_map, device)
            built[side].time(batches, 1)  # warm-up: first-call costs and AdamW's state set-up, untimed
        wall: dict[str, list[float]] = {s: [] for s in sides}
        cpu: dict[str, list[float]] = {s: [] for s in sides}
        for r in range(args.rounds):
            for side in sides[r % len(sides):] + sides[:r % len(sides)]:  # the order rotates every round
                w, c = built[side].time(batches, args.steps)
                wall[side].append(w)
                cpu[side].append(c)
        med_w = {s: statistics.median(v) for s, v in wall.items()}
        med_c = {s: statistics.median(v) for s, v in cpu.items()}
        for side in sides:
            per_round = [b / a for a, b in zip(wall["lrc"], wall[side])]
            rows.append({
                "setup": variant, "side": side, "wall_sec_per_step": med_w[side],
                "samples_per_s": args.batch_size / med_w[side], "cpu_sec_per_step": med_c[side],
                # > 1: lrc is faster than this side
                "lrc_speedup_wall": med_w[side] / med_w["lrc"], "lrc_speedup_cpu": med_c[side] / med_c["lrc"],
                "lrc_speedup_wall_range": [min(per_round), max(per_round)],
                "rounds_wall": wall[side], "rounds_cpu": cpu[side],
            })
        del built

    meta = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else
        f"cpu ({os.cpu_count()} cores, {platform.processor() or platform.machine()})",
        "threads": torch.get_num_threads(), "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "torch": torch.__version__, "transformers": transformers.__version__,
        "textbrewer": tb_version, "textbrewer_error": tb_error, "batch_size": args.batch_size,
        "seq_len": args.seq_len, "steps": args.steps, "rounds": args.rounds, "student_init": how,
        "layer_map": layer_map, "command": "python " + " ".join(sys.argv),
    }
    print(f"{meta['device']}, {meta['threads']} torch thread(s), load average {load_before[0]:.2f} before, "
          f"{meta['loadavg_after'][0]:.2f} after; torch {torch.__version__}, transformers {transformers.__version__}, "
          f"textbrewer {tb_version or 'n/a'}")
    print(f"{'setup':<6}{'side':<12}{'wall s/step':>12}{'samples/s':>11}{'CPU s/step':>12}"
          f"{'lrc x (wall)':>14}{'range':>13}{'lrc x (CPU)':>13}")
    for r in rows:
        lo, hi = r["lrc_speedup_wall_range"]
        print(f"{r['setup']:<6}{r['side']:<12}{r['wall_sec_per_step']:>12.3f}{r['samples_per_s']:>11.1f}"
              f"{r['cpu_sec_per_step']:>12.3f}{r['lrc_speedup_wall']:>14.2f}{f'{lo:.2f}-{hi:.2f}':>13}"
              f"{r['lrc_speedup_cpu']:>13.2f}")
    print("lrc x = this side's s/step / lrc's s/step (> 1: lrc is faster), medians over rounds; range: per round")
    print(json.dumps({"bench": "peer", **meta, "rows": rows}))


if __name__ == "__main__":
    main()
