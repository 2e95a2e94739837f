"""`python -m lrc ...`: teacher, distill, eval, predict, from the shell, with a progress bar.

Every problem a user can fix ends as one `error: ...` line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

from .config import DistillConfig, config_from_preset, list_presets
from .errors import LRCError

_OVERRIDES: list[tuple[str, type, str]] = [
    ("epochs", float, "training epochs (all stages together)"),
    ("max_steps", int, "total optimizer steps; overrides --epochs when > 0"),
    ("batch_size", int, "examples per step (per process)"),
    ("lr", float, "peak learning rate of AdamW"),
    ("temperature", float, "soft-label temperature T (paper: 1.1)"),
    ("alpha", float, "weight of COS-NCE in stage 2"),
    ("beta", float, "weight of the soft-label loss in stage 2"),
    ("gamma", float, "weight of the hard-label loss in stage 2"),
    ("epsilon", float, "gradient-perturbation step size"),
    ("stage1_fraction", float, "share of the steps spent in stage 1 (COS-NCE only)"),
    ("representation", str, "what COS-NCE compares: tokens | cls | mean"),
    ("negatives", str, "negatives: batch (in-batch) | bank (memory bank of K)"),
    ("num_negatives", int, "K for the bank"),
    ("distance", str, "angular (COS-NCE) | mse (ablation)"),
    ("projection", str, "per_layer | shared"),
    ("max_train_examples", int, "use at most N training examples (0 = all)"),
    ("max_eval_examples", int, "use at most N dev examples (0 = all)"),
    ("max_seq_length", int, "truncate inputs to N tokens"),
    ("seed", int, "random seed"),
    ("eval_every", int, "also evaluate every N steps"),
    ("log_every", int, "emit a loss point every N steps"),
    ("save_every", int, "checkpoint the student every N steps"),
    ("snapshot_every", int, "record matched-layer alignment on a fixed probe set every N steps (0 = never)"),
    ("probe_examples", int, "dev examples in that fixed probe set"),
    ("mixed_precision", str, "auto | no | fp16 | bf16"),
    ("device", str, "auto | cpu | cuda"),
    ("teacher_epochs", float, "epochs when the teacher must be fine-tuned first"),
    ("teacher_lr", float, "learning rate for that fine-tuning"),
    ("student_layers", int, "student transformer layers"),
    ("student_hidden", int, "student hidden size"),
    ("student_heads", int, "student attention heads"),
    ("student_ffn", int, "student FFN size"),
    ("student_init", str, "auto | random | teacher | checkpoint"),
    ("student_dropout", float, "student hidden/attention dropout (default 0.1)"),
    ("student_checkpoint", str, "start the student from this model (with --student-init checkpoint)"),
    ("train_file", str, "task custom: your own CSV/TSV/JSONL training file"),
    ("dev_file", str, "task custom: your own dev file"),
    ("text_column", str, "task custom: the text column"),
    ("text_pair_column", str, "task custom: the second text column of a pair task"),
    ("label_column", str, "task custom: the label column"),
]


def _add_common(p: argparse.ArgumentParser, training: bool) -> None:
    p.add_argument("--task", default=None, help="GLUE task (cola sst2 mrpc stsb qqp mnli qnli rte wnli) or custom")
    p.add_argument("--data-dir", default=None,
                   help="local GLUE folder (classic glue_data layout); default: $GLUE_DIR, else the HF hub")
    p.add_argument("--preset", default=None, help=f"YAML preset: {', '.join(list_presets())} or a path")
    group = p.add_argument_group("settings (override the preset)")
    for name, typ, help_text in _OVERRIDES:
        if not training and name not in ("max_eval_examples", "max_seq_length", "seed", "batch_size", "device",
                                          "mixed_precision", "dev_file", "train_file", "text_column",
                                          "text_pair_column", "label_column"):
            continue
        group.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None, help=help_text)
    if training:
        group.add_argument("--no-cos-nce", dest="use_cos_nce", action="store_false", default=None,
                           help="ablation: no COS-NCE (soft + hard only)")
        group.add_argument("--no-perturb", dest="perturb", action="store_false", default=None,
                           help="ablation: no gradient perturbation")
        group.add_argument("--compile", dest="compile", action="store_true", default=None,
                           help="torch.compile the student's transformer blocks; the first steps wait for the compiler")
        group.add_argument("--compile-backend", dest="compile_backend", default=None,
                           help="torch.compile backend: inductor (default) | aot_eager | eager | cudagraphs")
        group.add_argument("--no-length-grouping", dest="length_grouping", action="store_false", default=None,
                           help="plain shuffled batches instead of batches of similar lengths")
        group.add_argument("--one-stage", dest="two_stage", action="store_false", default=None,
                           help="ablation: skip stage 1 and train the total loss from the start")
        group.add_argument("--teacher-cache", dest="teacher_cache", action="store_true", default=None,
                           help="compute the teacher's outputs for the training set once and reuse them "
                                "(cache in $LRC_CACHE_DIR, default ~/.cache/lrc/teacher)")
        group.add_argument("--layer-map", default=None,
                           help="teacher layer (1-based) per student layer, e.g. 2,4,6 (default: uniform)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lrc", description="LRC-BERT distillation from the command line.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("teacher", help="fine-tune a teacher on a task (default backbone: the bundled MiniLM)")
    _add_common(p, training=True)
    p.add_argument("--model", default=None, help="backbone to fine-tune: hub id or folder (default: bundled MiniLM)")
    p.add_argument("--out", default=None, help="run folder to write (default: runs/teacher-<task>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN",
                   help="continue a stopped or interrupted run folder from its latest checkpoint (its own settings)")

    p = sub.add_parser("distill", help="distil a student from a teacher with LRC-BERT")
    _add_common(p, training=True)
    p.add_argument("--teacher", default=None,
                   help="fine-tuned teacher: run folder, model folder or hub id (default: bundled MiniLM, fine-tuned "
                        "on the task first and cached in the runs folder)")
    p.add_argument("--out", default=None, help="run folder to write (default: runs/lrc-<task>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN",
                   help="continue a stopped or interrupted run folder from its latest checkpoint (its own settings)")

    p = sub.add_parser("experiment", help="baselines, LRC and its ablations over several seeds, as one table")
    _add_common(p, training=True)
    p.add_argument("--teacher", default=None, help="fine-tuned teacher (default: the bundled MiniLM fine-tuned first)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0, 1, ... N-1)")
    p.add_argument("--variants", default="finetune,kd,lrc,lrc-no-cosnce,lrc-no-perturb,lrc-one-stage,lrc-mse",
                   help="comma-separated variants")
    p.add_argument("--name", default=None, help="experiment name (default: exp-<task>)")
    p.add_argument("--runs-dir", default=None, help="run store folder (default: $LRC_RUNS_DIR or runs/)")
    p.add_argument("--robustness-rates", default="0.1,0.2",
                   help="noise rates for the robustness table (empty string: skip it)")

    p = sub.add_parser("report", help="an experiment's tables (variants over seeds, robustness) as markdown")
    p.add_argument("names", nargs="*", help="experiment names (default: every experiment in the run store)")
    p.add_argument("--runs-dir", default=None, help="run store folder (default: $LRC_RUNS_DIR or runs/)")

    p = sub.add_parser("eval", help="dev-set metrics of a saved model")
    _add_common(p, training=False)
    p.add_argument("--model", required=True, help="run folder, model folder or hub id")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON only")

    p = sub.add_parser("predict", help="predict labels for sentences")
    p.add_argument("--model", required=True, help="run folder, model folder or hub id")
    p.add_argument("--pair", default=None, help="the second sentence, for sentence-pair tasks")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--json", action="store_true", help="print one JSON object per sentence")
    p.add_argument("text", nargs="+", help="sentence(s) to classify")
    return parser


def _config(args: argparse.Namespace) -> DistillConfig:
    overrides: dict[str, Any] = {}
    for name, _typ, _help in _OVERRIDES:
        overrides[name] = getattr(args, name, None)
    for flag in ("use_cos_nce", "perturb", "two_stage", "teacher_cache", "length_grouping", "compile",
                 "compile_backend"):
        overrides[flag] = getattr(args, flag, None)
    if getattr(args, "layer_map", None):
        try:
            overrides["layer_map"] = [int(x) for x in args.layer_map.split(",")]
        except ValueError:
            raise LRCError(f"--layer-map must be comma-separated integers, like 2,4,6; got {args.layer_map!r}") from None
    if getattr(args, "teacher", None):
        overrides["teacher"] = args.teacher
    if args.task:
        overrides["task"] = args.task
    elif getattr(args, "train_file", None):
        overrides["task"] = "custom"
    if args.data_dir:
        overrides["data_dir"] = args.data_dir
    cfg = config_from_preset(args.preset, **overrides)
    if not args.task and not args.preset and not cfg.train_file:
        raise LRCError("--task is required (e.g. --task sst2), or --train-file for your own data")
    if cfg.data_dir is None and os.environ.get("GLUE_DIR"):
        cfg.data_dir = os.environ["GLUE_DIR"]
    return cfg.validate()


class _StopOnSignal:
    """Ctrl-C asks the trainer to stop at the next step and save; a second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._previous = signal.getsignal(signal.SIGINT)

    def __enter__(self) -> "_StopOnSignal":
        def handler(signum, frame):
            if self.event.is_set():
                raise KeyboardInterrupt
            print("\nstopping after this step (Ctrl-C again to abort)...", file=sys.stderr)
            self.event.set()

        signal.signal(signal.SIGINT, handler)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGINT, self._previous)


def _show(events: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """Print an event stream as progress bars and eval lines; return the end event of the main run."""
    from tqdm.auto import tqdm

    bars: dict[str, Any] = {}
    end: dict[str, Any] = {}
    if not _is_main():  # the other processes of a multi-process run stay quiet
        for ev in events:
            if ev["type"] == "end" and ev.get("phase", "main") == "main":
                end = ev
        return end
    for ev in events:
        phase = ev.get("phase", "main")
        kind = ev["type"]
        if kind == "start":
            desc = "teacher fine-tuning" if phase == "teacher" else ("distilling" if ev.get("distilling") else "training")
            bars[phase] = tqdm(total=ev["total_steps"], desc=desc, unit="step", dynamic_ncols=True)
            tqdm.write(f"[{phase}] {ev['train_examples']} examples, {ev['total_steps']} steps "
                       f"({ev['stage1_steps']} in stage 1) on {ev['device']} ({ev['precision']})")
        elif kind == "step" and phase in bars:
            bar = bars[phase]
            bar.update(ev["step"] - bar.n)
            post = {k: f"{ev[k]:.4f}" for k in ("loss", "cos_nce", "soft", "hard") if k in ev}
            post["stage"] = ev["stage"]
            post["ex/s"] = f"{ev['samples_per_s']:.0f}"
            bar.set_postfix(post, refresh=False)
        elif kind == "stage":
            tqdm.write(f"[{phase}] stage {ev['stage']} starts at step {ev['step']}")
        elif kind == "eval":
            metrics = ", ".join(f"{k}={v:.4f}" for k, v in ev["metrics"].items())
            tqdm.write(f"[{phase}] eval {ev['split']} at step {ev['step']} (stage {ev['stage']}): {metrics}")
        elif kind == "teacher_ready":
            tqdm.write(f"teacher: {ev['path']}" + (" (cached)" if ev.get("cached") else ""))
        elif kind == "end":
            if phase in bars:
                bars[phase].close()
            if phase == "main":
                end = ev
            if ev.get("message"):
                tqdm.write(f"[{phase}] {ev['status']}: {ev['message']}")
    return end


def _out_run(args: argparse.Namespace, cfg: DistillConfig, kind: str):
    from .runs import RunStore

    if args.out:
        out = Path(args.out)
        store = RunStore(out.parent if str(out.parent) else ".")
        return store, store.create(cfg.to_dict(), run_id=out.name, kind=kind)
    store = RunStore()
    return store, store.create(cfg.to_dict(), run_id=_shared_run_id(store, cfg, kind), kind=kind)


def _shared_run_id(store, cfg: DistillConfig, kind: str) -> str | None:
    """Under torchrun every process must name the same run folder: rank 0 picks it, the others receive it."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    state = PartialState(cpu=cfg.device == "cpu")
    box = [store.new_id(cfg.task, kind) if state.is_main_process else None]
    broadcast_object_list(box, from_process=0)
    return box[0]


def cmd_resume(args: argparse.Namespace) -> int:
    """`--resume RUN`: the run's own config.json decides everything, so other settings would be ignored."""
    from .pipeline import resume_run
    from .runs import run_from_path

    path = Path(args.resume)
    if not (path / "config.json").exists():
        raise LRCError(f"--resume {args.resume}: no run folder there (expected {path / 'config.json'})")
    run = run_from_path(path)
    with _StopOnSignal() as stop:
        end = _show(resume_run(run, stop.event.is_set))
    if _is_main():
        print(f"run: {run.path} ({end.get('status')}); model: {run.model_dir}")
    _print_summary(run)
    return 0 if end.get("status") in ("completed", "stopped") else 1


def cmd_teacher(args: argparse.Namespace) -> int:
    if args.resume:
        return cmd_resume(args)
    cfg = _config(args)
    from .pipeline import labels_only, run_teacher

    # a teacher run trains for teacher_epochs at teacher_lr unless --epochs / --lr say otherwise
    cfg = labels_only(cfg, teacher=args.model, epochs=cfg.teacher_epochs if args.epochs is None else None,
                      lr=cfg.teacher_lr if args.lr is None else None)  # config.json records what really ran
    _store, run = _out_run(args, cfg, "teacher")
    with _StopOnSignal() as stop:
        end = _show(run_teacher(cfg, run, stop.event.is_set))
    if _is_main():
        print(f"teacher run: {run.path} ({end.get('status')}); model: {run.path / 'model'}")
    _print_summary(run)
    return 0 if end.get("status") in ("completed", "stopped") else 1


def cmd_distill(args: argparse.Namespace) -> int:
    if args.resume:
        return cmd_resume(args)
    cfg = _config(args)  # validated before torch is imported: a bad flag is answered at once
    from .pipeline import run_distill

    store, run = _out_run(args, cfg, "distill")
    with _StopOnSignal() as stop:
        end = _show(run_distill(cfg, run, stop.event.is_set, store=store))
    if _is_main():
        print(f"run: {run.path} ({end.get('status')}); student: {run.path / 'student'}")
    _print_summary(run)
    return 0 if end.get("status") in ("completed", "stopped") else 1


def _is_main() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _print_summary(run) -> None:
    if not _is_main():
        return
    s = run.summary
    if not s:
        return
    parts = [f"{k}: {v}" for k, v in (("score", s.get("score")), ("teacher", s.get("teacher_score")),
                                      ("params", s.get("student_params")), ("seconds", round(s.get("seconds", 0), 1)))
             if v is not None]
    print("summary: " + ", ".join(parts))


def cmd_experiment(args: argparse.Namespace) -> int:
    from .experiment import ExperimentSpec, markdown_table, run_experiment
    from .runs import RunStore

    cfg = _config(args)
    if args.seeds < 1:
        raise LRCError(f"--seeds must be at least 1; got {args.seeds}")
    try:
        rates = tuple(float(x) for x in args.robustness_rates.split(",") if x.strip())
    except ValueError:
        raise LRCError(f"--robustness-rates must be comma-separated numbers; got {args.robustness_rates!r}") from None
    spec = ExperimentSpec(args.name or f"exp-{cfg.task}", cfg, [v.strip() for v in args.variants.split(",") if v.strip()],
                          list(range(args.seeds)), rates)
    store = RunStore(args.runs_dir)
    with _StopOnSignal() as stop:
        path = None
        for event in run_experiment(spec, store, stop.event.is_set):
            if event["type"] == "variant":
                print(f"== {event['variant']} seed {event['seed']}: {event['run']}", flush=True)
            elif event["type"] == "end" and event.get("phase", "").count("/"):
                print(f"   {event['status']} after {event.get('step')} steps", flush=True)
            elif event["type"] == "experiment_done":
                path = event["path"]
    if path:
        from .runs import read_json

        print(markdown_table(read_json(Path(path), {})))
        print(f"experiment: {path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from .pipeline import evaluate_model

    cfg = _config(args)
    results = evaluate_model(args.model, cfg)
    if args.json:
        print(json.dumps(results))
    else:
        for split, metrics in results.items():
            print(f"{split}: " + ", ".join(f"{k}={v:.4f}" for k, v in metrics.items()))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .predict import predict

    for text in args.text:
        p = predict(args.model, text, args.pair, max_length=args.max_seq_length)
        if args.json:
            print(json.dumps({"text": text, "label": p.label, "probabilities": p.probabilities, "score": p.score,
                              "latency_ms": p.latency_ms, "truncated": p.truncated}))
        else:
            probs = ", ".join(f"{k} {v:.3f}" for k, v in p.probabilities.items())
            note = f"  [{'; '.join(p.notes)}]" if p.notes else ""
            print(f"{p.label}\t({probs or p.score})\t{text}{note}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .experiment import list_experiments, load_experiment, markdown_table
    from .runs import RunStore

    root = Path(args.runs_dir) if args.runs_dir else None
    if root is not None and not root.is_dir():
        raise LRCError(f"--runs-dir {root} does not exist")
    store = RunStore(root)
    names = args.names or list_experiments(store)
    if not names:
        raise LRCError(f"no experiments in {store.root}; make one with `python -m lrc experiment`")
    for name in names:
        result = load_experiment(store, name)
        took = (result.get("finished") or 0) - (result.get("started") or 0)
        print(f"### {name} ({result.get('task')}, seeds {result.get('seeds')}"
              + (f", {took / 60:.0f} min" if result.get("finished") else ", unfinished") + ")\n")
        print(markdown_table(result) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"teacher": cmd_teacher, "distill": cmd_distill, "eval": cmd_eval, "predict": cmd_predict,
               "experiment": cmd_experiment, "report": cmd_report}[args.command]
    try:
        return handler(args)
    except LRCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
