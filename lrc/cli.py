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
from .errors import ConfigError, LRCError
from .knobs import GROUPS, knob_map, knobs

def _add_knob_flags(p: argparse.ArgumentParser, training: bool, skip: tuple[str, ...] = ()) -> None:
    """One flag per knob (lrc.knobs): `--lr`, `--student-layers`, and `--x` / `--no-x` for switches.

    Values are read as text and converted by the knob itself in `_config`, so a bad value is one `error:` line
    that names the flag, like every other mistake, instead of argparse's usage block.
    """
    p.add_argument("--preset", default=None, help=f"YAML preset: {', '.join(list_presets())} or a path")
    groups: dict[str, argparse._ArgumentGroup] = {}
    for k in knobs(DistillConfig):
        if k.name in skip or not (training or k.info.eval_flag):
            continue
        if k.info.group not in groups:
            groups[k.info.group] = p.add_argument_group(GROUPS[k.info.group])
        group = groups[k.info.group]
        values = f" [{k.range_text()}]" if k.range_text() else ""
        if k.kind == "bool":
            group.add_argument(k.flag, dest=k.name, action="store_true", default=None,
                               help=f"{k.info.help} (default: {'on' if k.default else 'off'})")
            group.add_argument(k.off_flag, dest=k.name, action="store_false", default=None, help=argparse.SUPPRESS
                               if k.info.off_flag is None and k.default is False else f"turn {k.flag} off")
        else:
            group.add_argument(k.flag, dest=k.name, default=None, metavar=k.kind.upper().replace("CHOICE", "NAME"),
                               help=f"{k.info.help}{values}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lrc", description="LRC-BERT distillation from the command line.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("teacher", help="fine-tune a teacher on a task (default backbone: the bundled MiniLM)")
    _add_knob_flags(p, training=True, skip=("teacher",))
    p.add_argument("--model", default=None, help="backbone to fine-tune: hub id or folder (default: bundled MiniLM)")
    p.add_argument("--out", default=None, help="run folder to write (default: runs/teacher-<task>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN",
                   help="continue a stopped or interrupted run folder from its latest checkpoint (its own settings)")

    p = sub.add_parser("teachers", help="make and cache the default teacher of every task (what distill would use)")
    _add_knob_flags(p, training=True, skip=("teacher",))
    p.add_argument("--tasks", default=None, help="comma-separated tasks (default: every task in the data folder)")
    p.add_argument("--runs-dir", default=None, help="run store folder (default: $LRC_RUNS_DIR or runs/)")

    p = sub.add_parser("distill", help="distil a student from a teacher with LRC-BERT")
    _add_knob_flags(p, training=True)
    p.add_argument("--out", default=None, help="run folder to write (default: runs/lrc-<task>-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN",
                   help="continue a stopped or interrupted run folder from its latest checkpoint (its own settings)")

    p = sub.add_parser("experiment", help="baselines, LRC and its ablations over several seeds, as one table")
    _add_knob_flags(p, training=True)
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
    _add_knob_flags(p, training=False)
    p.add_argument("--model", required=True, help="run folder, model folder or hub id")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON only")

    p = sub.add_parser("predict", help="predict labels for sentences")
    p.add_argument("--model", required=True, help="run folder, model folder or hub id")
    p.add_argument("--pair", default=None, help="the second sentence, for sentence-pair tasks")
    p.add_argument("--max-seq-length", type=int, default=128)
    p.add_argument("--json", action="store_true", help="print one JSON object per sentence")
    p.add_argument("text", nargs="+", help="sentence(s) to classify")

    p = sub.add_parser("knobs", help="every knob: flag, default, valid values, what it does (docs/KNOBS.md)")
    p.add_argument("--markdown", action="store_true", help="print the table of docs/KNOBS.md")
    return parser


def _config(args: argparse.Namespace) -> DistillConfig:
    """The preset, then every flag given over it, each converted and checked by its own knob."""
    overrides: dict[str, Any] = {}
    for name, k in knob_map(DistillConfig).items():
        raw = getattr(args, name, None)
        if raw is None:
            continue
        try:
            value = k.coerce(raw)
        except ConfigError as exc:
            raise ConfigError(f"{k.flag}: {exc}") from None
        k.check(value)  # its message names the knob, the value and what is allowed
        overrides[name] = value
    if not overrides.get("task") and overrides.get("train_file"):
        overrides["task"] = "custom"
    cfg = config_from_preset(args.preset, **overrides)
    if not overrides.get("task") and not args.preset and not cfg.train_file:
        raise LRCError("--task is required (e.g. --task sst2), or --train-file for your own data")
    if cfg.data_dir is None and os.environ.get("GLUE_DIR"):
        cfg = cfg.override(data_dir=os.environ["GLUE_DIR"])
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
            score = f", dev {ev.get('metric')} {ev['score']:.4f}" if isinstance(ev.get("score"), float) else ""
            tqdm.write(f"teacher: {ev['path']}" + (" (cached)" if ev.get("cached") else "") + score)
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
    """`lrc teacher`: fine-tune a backbone with the task's recipe (lrc.recipes); --epochs, --lr, --batch-size,
    --warmup-ratio, --max-train-examples and --seed, when given, replace the recipe's values."""
    if args.resume:
        return cmd_resume(args)
    cfg = _config(args)
    from .pipeline import load_data, run_teacher, teacher_config

    data = load_data(cfg, max_train_examples=cfg.max_train_examples)
    tcfg = teacher_config(cfg.override(teacher=args.model), data.task)
    given = {name: getattr(cfg, name) for name in ("epochs", "lr", "batch_size", "warmup_ratio", "max_train_examples",
                                                   "seed", "save_every") if getattr(args, name, None) is not None}
    tcfg = tcfg.override(**given)  # config.json records what really ran
    if given.get("max_train_examples") is not None:
        data = load_data(tcfg)
    _store, run = _out_run(args, tcfg, "teacher")
    with _StopOnSignal() as stop:
        end = _show(run_teacher(tcfg, run, stop.event.is_set, data=data))
    if _is_main():
        print(f"teacher run: {run.path} ({end.get('status')}); model: {run.path / 'model'}")
    _print_summary(run)
    return 0 if end.get("status") in ("completed", "stopped") else 1


def cmd_teachers(args: argparse.Namespace) -> int:
    """`lrc teachers`: make (or find) the default teacher of every task, the one a distillation would use."""
    from .pipeline import ensure_teacher
    from .runs import RunStore

    cfg = _config(args)
    tasks = [t.strip() for t in (args.tasks or "").split(",") if t.strip()] or _available_tasks(cfg)
    store = RunStore(args.runs_dir)
    rows = []
    with _StopOnSignal() as stop:
        for n, task in enumerate(tasks, 1):
            if stop.event.is_set():
                break
            print(f"== teacher {n}/{len(tasks)}: {task}", flush=True)
            ready = {}
            _show(_remember_ready(ensure_teacher(cfg.override(task=task), store, stop.event.is_set), ready))
            if ready:
                rows.append((task, ready))
    print("\n| task | teacher run | dev score | minutes |\n|---|---|---|---|")
    for task, ev in rows:
        score = f"{ev['score']:.4f} {ev.get('metric') or ''}" if isinstance(ev.get("score"), float) else "n/a"
        minutes = f"{ev['seconds'] / 60:.1f}" if ev.get("seconds") else "n/a"
        print(f"| {task} | {ev['path']}{' (cached)' if ev.get('cached') else ''} | {score} | {minutes} |")
    return 0 if len(rows) == len(tasks) else 1


def _remember_ready(events: Iterator[dict[str, Any]], ready: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for event in events:
        if event["type"] == "teacher_ready":
            ready.update(event)
        yield event


def _available_tasks(cfg: DistillConfig) -> list[str]:
    """Every GLUE task whose files are in the data folder (all of them when the data comes from the hub)."""
    from .data import resolve_data_dir
    from .tasks import TASKS

    folder = resolve_data_dir(cfg.data_dir)
    if folder is None:
        return list(TASKS)
    return [name for name, spec in TASKS.items() if (folder / spec.local.directory / "train.tsv").exists()]


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
    if s.get("beats_constant") is not None:
        verdict = "above" if s["beats_constant"] else "NOT above"
        print(f"check: dev {s.get('main_metric')} {s['score']:.4f} is {verdict} the best constant answer's "
              f"{s['constant_score']:.4f}")


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


def cmd_knobs(args: argparse.Namespace) -> int:
    from .knobs import markdown_table

    if args.markdown:
        print(markdown_table(DistillConfig), end="")
        return 0
    for k in knobs(DistillConfig):
        flag = f"{k.flag} / {k.off_flag}" if k.kind == "bool" else k.flag
        print(f"{flag:34} {str(k.default):10} {k.range_text():28} {k.info.help}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"teacher": cmd_teacher, "distill": cmd_distill, "eval": cmd_eval, "predict": cmd_predict,
               "experiment": cmd_experiment, "report": cmd_report, "knobs": cmd_knobs,
               "teachers": cmd_teachers}[args.command]
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
