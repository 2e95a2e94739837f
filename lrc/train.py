"""The two-stage LRC-BERT Distiller on Hugging Face Accelerate, as a generator of plain event dicts.

One event stream feeds every consumer: the CLI prints it, the run store appends it to events.jsonl, the app
plots it. Events (all JSON-safe):

    {"type": "start", "total_steps", "stage1_steps", "device", "precision", "num_processes", ...}
    {"type": "step", "stage", "step", "loss", "cos_nce", "soft", "hard", "lr", "samples_per_s", "elapsed"}
    {"type": "stage", "stage": 2, "step"}                     # the stage boundary
    {"type": "eval", "stage", "step", "split", "metrics"}
    {"type": "checkpoint", "step"}                           # student + resumable training state saved
    {"type": "resume", "step", "from"}                         # a run continued from its checkpoint
    {"type": "end", "status": completed|stopped|diverged, "step", "message"}

The Distiller writes nothing to disk except through the `on_save` callback and, when given a `checkpoint_dir`,
a resumable checkpoint (Accelerate's `save_state` plus the data position) swapped in atomically; `lrc.pipeline`
ties both to a run folder.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from transformers import PreTrainedModel

from .analysis import probe_alignment
from .bank import NegativeBank
from .checkpoints import is_disk_full, load_checkpoint, read_trainer_state, save_checkpoint
from .config import DistillConfig
from .data import TaskData, make_loader, tokenize
from .devices import make_accelerator
from .errors import ConfigError, DataError
from .evaluation import MODEL_INPUTS, evaluate_splits, predict_dataset
from .losses import cos_nce, hard_label_loss, mse_representation_loss, represent, soft_label_loss
from .models import Projections, StudentWithProjections, compile_blocks, embeddings_module
from .negatives import draw_negatives, gathered_in_batch
from .perturb import embedding_output, perturb_embeddings
from .schedule import two_stage_schedule
from .tasks import TaskSpec
from .teacher_cache import build_or_load, describe

StopCheck = Callable[[], bool]





@dataclass
class TeacherOutputs:
    logits: torch.Tensor
    layers: list[torch.Tensor]  # the representation at each mapped teacher layer


class Distiller:
    """LRC-BERT training: stage 1 (COS-NCE only), stage 2 (alpha*COS-NCE + beta*soft + gamma*hard).

    With `teacher=None` it fine-tunes on the labels alone (hard loss), which is how `lrc teacher` trains a
    teacher and how the `finetune` baseline is made.
    """

    def __init__(
        self,
        cfg: DistillConfig,
        data: TaskData,
        tokenizer,
        student: PreTrainedModel,
        teacher: PreTrainedModel | None = None,
        layer_map: list[int] | None = None,
        projections: Projections | None = None,
        should_stop: StopCheck | None = None,
        on_save: Callable[[PreTrainedModel, Projections | None, str], None] | None = None,
        accelerator: Accelerator | None = None,
        checkpoint_dir: Path | None = None,
        resume_from: Path | None = None,
        checkpoint_extra: dict[str, Any] | None = None,
    ):
        self.cfg = cfg.validate()
        self.task: TaskSpec = data.task
        self.data = data
        self.tokenizer = tokenizer
        self.teacher = teacher
        self.layer_map = layer_map or []
        self.distilling = teacher is not None
        self.uses_reps = self.distilling and cfg.use_cos_nce and cfg.alpha > 0 and bool(self.layer_map)
        if self.uses_reps and projections is None:
            projections = Projections(student.config.hidden_size, teacher.config.hidden_size, len(self.layer_map),
                                      shared=cfg.projection == "shared")
        self.projections = projections if self.uses_reps else None
        self.should_stop = should_stop or (lambda: False)
        self.on_save = on_save
        self.accelerator = accelerator or make_accelerator(cfg)
        self.student = student
        self.bank = NegativeBank(max(4 * cfg.num_negatives, 8 * cfg.batch_size), seed=cfg.seed) \
            if cfg.negatives == "bank" else None
        self.step = 0
        self._rows: torch.Tensor | None = None
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.resume_from = Path(resume_from) if resume_from is not None else None
        self.checkpoint_extra = checkpoint_extra or {}
        self._generator: torch.Generator | None = None
        self._epoch = 0
        self._batch_in_epoch = 0
        self._epoch_generator_state: torch.Tensor | None = None

    # ---- setup ------------------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        cfg, acc = self.cfg, self.accelerator
        set_seed(cfg.seed)
        train = tokenize(self.data.train, self.tokenizer, cfg.max_seq_length)
        if len(train) == 0:
            raise DataError("the training set is empty")
        if self.uses_reps and cfg.distance == "angular" and len(train) < 2:
            raise DataError("COS-NCE contrasts each example with others: it needs at least 2 training examples")
        self.dev_sets = {name: tokenize(ds, self.tokenizer, cfg.max_seq_length) for name, ds in self.data.dev.items()}
        self.cache = None
        self.cache_info: dict[str, Any] = {}
        if cfg.teacher_cache and self.teacher is not None:
            train = self._attach_cache(train)
        loader = make_loader(train, self.tokenizer, cfg.batch_size, shuffle=True, seed=cfg.seed,
                             length_grouping=cfg.length_grouping, num_workers=cfg.num_workers,
                             drop_last=len(train) > cfg.batch_size and self.uses_reps)
        # the shuffling generator: its state at the start of an epoch plus a batch count is the data position
        self._generator = getattr(loader.sampler, "generator", None)
        self.probe = None
        if cfg.snapshot_every and self.uses_reps:
            probe_ds = next(iter(self.dev_sets.values()))
            probe_ds = probe_ds.select(range(min(cfg.probe_examples, len(probe_ds))))
            self.probe = next(iter(make_loader(probe_ds, self.tokenizer, len(probe_ds), shuffle=False)))
        modules = StudentWithProjections(self.student, self.projections or Projections(1, 1, 0))
        steps_per_epoch = max(1, math.ceil(len(loader) / acc.num_processes))
        self.total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * steps_per_epoch))
        two_stage = cfg.two_stage and self.uses_reps
        self.stage1_steps = min(self.total_steps - 1, round(cfg.stage1_fraction * self.total_steps)) \
            if two_stage and self.total_steps > 1 else 0
        if two_stage and cfg.stage1_fraction >= 1.0:
            self.stage1_steps = self.total_steps
        decay, no_decay = [], []
        for name, p in modules.named_parameters():
            (no_decay if p.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(p)
        # fused AdamW: one kernel over all parameters instead of a Python loop of ~10 ops per tensor. Same update
        # to float rounding; on one CPU thread the update of a 15.6M-parameter student takes ~26 ms instead of
        # ~210 ms (its share of a whole step: docs/BENCHMARKS.md, bench/step.py --adamw-loop)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=cfg.lr, fused=acc.device.type in ("cpu", "cuda"),
        )
        scheduler = two_stage_schedule(optimizer, self.stage1_steps, self.total_steps, cfg.warmup_ratio,
                                       ticks_per_step=acc.num_processes)
        self.model, self.optimizer, self.loader, self.scheduler = acc.prepare(modules, optimizer, loader, scheduler)
        if cfg.compile:
            # compiled here rather than by Accelerate's dynamo plugin: that plugin lives in Accelerate's process-wide
            # state, so a second run in the same process (the app, tests) could not turn compiling on or off; and
            # block by block, since the whole student does not compile cleanly (lrc.models.compile_blocks)
            compile_blocks(acc.unwrap_model(self.model).student, cfg.compile_backend)
        if self.teacher is not None:
            self.teacher.to(acc.device).eval()
            self.teacher.requires_grad_(False)

    def _attach_cache(self, train):
        """Compute (or load) the teacher's outputs for the training set; rows carry their position to look up."""
        started = time.perf_counter()
        self.teacher.to(self.accelerator.device)
        rng = torch.get_rng_state()  # building the cache must not shift the random stream: cached == uncached run
        with self.accelerator.main_process_first():  # one process computes and writes it, the others load it
            self.cache, hit = build_or_load(
                self.teacher, getattr(self.teacher, "name_or_path", None), train, self.tokenizer,
                self.layer_map if self.uses_reps else [], self.cfg.representation, self.cfg.max_seq_length,
                self.accelerator.device, batch_size=max(64, 2 * self.cfg.batch_size),
            )
        torch.set_rng_state(rng)
        self.cache_info = {"cached": hit, "seconds": time.perf_counter() - started, **describe(self.cache)}
        return train.add_column("row", list(range(len(train))))

    # ---- the loss ---------------------------------------------------------------------------------------------
    def _teacher_forward(self, inputs: dict[str, torch.Tensor], rows: torch.Tensor | None = None) -> TeacherOutputs:
        if self.cache is not None and rows is not None:
            length = inputs["attention_mask"].shape[1]
            logits, layers = self.cache.lookup(rows, length, self.accelerator.device, torch.float32)
            return TeacherOutputs(logits, layers if self.uses_reps else [])
        with torch.no_grad(), self.accelerator.autocast():
            out = self.teacher(**inputs, output_hidden_states=self.uses_reps)
        layers = []
        if self.uses_reps:
            mask = inputs["attention_mask"]
            layers = [represent(out.hidden_states[n], mask, self.cfg.representation) for n in self.layer_map]
        return TeacherOutputs(out.logits.detach(), [x.detach() for x in layers])

    def _draw_negatives(self, mask: torch.Tensor, ids: torch.Tensor):
        """This step's bank negatives, drawn once before the clean pass (lrc.negatives.draw_negatives)."""
        if not self.uses_reps or self.cfg.distance != "angular":
            return None
        return draw_negatives(self.bank, self.cache, self._rows, ids, self.cfg.num_negatives, mask)

    def _rep_loss(self, projected: list[torch.Tensor], inputs, teacher: TeacherOutputs, negatives) -> torch.Tensor:
        cfg, mask = self.cfg, inputs["attention_mask"]
        students = [represent(h, mask, cfg.representation) for h in projected]
        token_mask = mask if cfg.representation == "tokens" else None
        if cfg.distance == "mse":
            return sum(mse_representation_loss(s, t, token_mask) for s, t in zip(students, teacher.layers))
        if negatives is not None:
            negs, neg_mask = negatives
            return sum(cos_nce(s, t, n, token_mask, neg_mask) for s, t, n in zip(students, teacher.layers, negs))
        if self.accelerator.num_processes > 1:
            return gathered_in_batch(self.accelerator, students, teacher.layers, mask, token_mask)
        return sum(cos_nce(s, t, None, token_mask) for s, t in zip(students, teacher.layers))

    def _forward(self, inputs: dict[str, torch.Tensor], stage: int):
        """The student (and projections) through the prepared module; stage 1 of a distillation needs no logits."""
        n = len(self.layer_map) if self.uses_reps else 0
        return self.model(n_projected=n, with_logits=stage == 2 or self.teacher is None, **inputs)

    def _losses(self, stage: int, out, inputs, labels, teacher: TeacherOutputs | None, negatives
                ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        logits, projected = out
        terms: dict[str, torch.Tensor] = {}
        if self.uses_reps:
            terms["cos_nce"] = self._rep_loss(projected, inputs, teacher, negatives)
        if stage == 2:
            if teacher is not None and cfg.beta > 0:
                terms["soft"] = soft_label_loss(logits, teacher.logits, cfg.temperature)
            if cfg.gamma > 0 or teacher is None:
                terms["hard"] = hard_label_loss(logits, labels)
        if teacher is None:
            total = terms["hard"]
        elif stage == 1:
            total = terms["cos_nce"]
        else:
            total = sum(w * terms[k] for k, w in (("cos_nce", cfg.alpha), ("soft", cfg.beta), ("hard", cfg.gamma))
                        if k in terms)
        terms["loss"] = total
        return terms

    # ---- one step ---------------------------------------------------------------------------------------------
    def _train_step(self, batch: dict[str, torch.Tensor], stage: int) -> dict[str, torch.Tensor]:
        cfg, acc = self.cfg, self.accelerator
        inputs = {k: batch[k] for k in MODEL_INPUTS if k in batch}
        labels, ids = batch["labels"], batch["idx"]
        self._rows = batch.get("row")
        teacher = self._teacher_forward(inputs, batch.get("row")) if self.teacher is not None else None
        negatives = self._draw_negatives(inputs["attention_mask"], ids) if teacher is not None else None
        emb = embeddings_module(acc.unwrap_model(self.model).student)
        self.model.train()
        if cfg.perturb and cfg.epsilon > 0:
            captured: dict[str, torch.Tensor] = {}

            def as_leaf(e: torch.Tensor) -> torch.Tensor:
                captured["e"] = e
                captured["leaf"] = e.detach().requires_grad_(True)
                return captured["leaf"]

            # clean pass: only d loss / d e is needed, so no parameter gradients (and no DDP sync) are made
            with acc.no_sync(self.model), embedding_output(emb, as_leaf), acc.autocast():
                clean = self._losses(stage, self._forward(inputs, stage), inputs, labels, teacher, negatives)
            # under fp16 the loss is scaled first (as backward() does) so small gradients do not underflow to zero;
            # only the direction is used, so the scale needs no undoing
            scaler = getattr(acc, "scaler", None)
            scale = scaler.get_scale() if scaler is not None and scaler.is_enabled() else 1.0
            (grad,) = torch.autograd.grad(clean["loss"] * scale, captured["leaf"], allow_unused=True)
            if grad is not None:
                perturbed = perturb_embeddings(captured["e"], grad, cfg.epsilon, cfg.perturb_norm,
                                               inputs["attention_mask"])
                with embedding_output(emb, lambda _e: perturbed), acc.autocast():
                    terms = self._losses(stage, self._forward(inputs, stage), inputs, labels, teacher, negatives)
            else:
                terms = clean
        else:
            with acc.autocast():
                terms = self._losses(stage, self._forward(inputs, stage), inputs, labels, teacher, negatives)
        acc.backward(terms["loss"])
        if cfg.max_grad_norm > 0 and acc.sync_gradients:
            acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.bank is not None and self.cache is None and teacher is not None and teacher.layers:
            self.bank.add(teacher.layers, ids, inputs["attention_mask"] if cfg.representation == "tokens" else None,
                          max_length=-(-cfg.max_seq_length // 8) * 8)  # batches are padded to a multiple of 8
        return {k: v.detach() for k, v in terms.items()}

    # ---- evaluation -------------------------------------------------------------------------------------------
    def evaluate(self, model: PreTrainedModel | None = None) -> dict[str, dict[str, float]]:
        """Dev metrics per dev split. Returns {} when a stop request interrupts it."""
        model = model or self.accelerator.unwrap_model(self.model).student
        return evaluate_splits(model, self.dev_sets, self.task, self.tokenizer, self.cfg.batch_size * 2,
                               self.accelerator, self.should_stop)

    def _eval_events(self, stage: int) -> Iterator[dict[str, Any]]:
        was_training = self.model.training
        for split, metrics in self.evaluate().items():
            yield {"type": "eval", "stage": stage, "step": self.step, "split": split, "metrics": metrics}
        self.model.train(was_training)

    def _snapshot_event(self) -> dict[str, Any]:
        """Matched-layer alignment on the fixed probe set (lrc.analysis does the measuring)."""
        unwrapped = self.accelerator.unwrap_model(self.model)
        batch = {k: v.to(self.accelerator.device) for k, v in self.probe.items()}
        result = probe_alignment(unwrapped.student, unwrapped.projections, self.teacher, batch, self.layer_map,
                                 self.cfg.representation)
        return {"type": "snapshot", "step": self.step, **result}

    def _save(self, tag: str) -> None:
        if self.on_save is not None and self.accelerator.is_main_process:
            unwrapped = self.accelerator.unwrap_model(self.model)
            self.on_save(unwrapped.student, self.projections, tag)

    # ---- checkpoints ------------------------------------------------------------------------------------------
    def _checkpoint(self) -> None:
        """Save everything a resumed run needs (lrc.checkpoints), with the loop's data position."""
        if self.checkpoint_dir is None:
            return
        state = {"step": self.step, "epoch": self._epoch, "batch_in_epoch": self._batch_in_epoch,
                 "total_steps": self.total_steps, "stage1_steps": self.stage1_steps,
                 "generator_state": (self._epoch_generator_state.tolist()
                                     if self._epoch_generator_state is not None else None),
                 "saved": time.time(), **self.checkpoint_extra}
        save_checkpoint(self.accelerator, self.checkpoint_dir, state, self.bank)

    def _restore(self) -> dict[str, Any]:
        """Load the checkpoint of `resume_from` into the prepared objects and put the loop where it was."""
        state = read_trainer_state(self.resume_from)
        if state["total_steps"] != self.total_steps:
            raise ConfigError(f"the checkpoint in {self.resume_from} was made for {state['total_steps']} steps but "
                              f"this run has {self.total_steps}; resume with the run's own settings")
        load_checkpoint(self.accelerator, self.resume_from, self.bank)
        self.step, self._epoch, self._batch_in_epoch = state["step"], state["epoch"], state["batch_in_epoch"]
        if self._generator is not None and state.get("generator_state") is not None:
            self._generator.set_state(torch.tensor(state["generator_state"], dtype=torch.uint8))
        return state

    def _epoch_iterator(self, skip: int = 0):
        """A fresh pass over the loader (remembering where the shuffle started), with `skip` batches consumed."""
        if self._generator is not None:
            self._epoch_generator_state = self._generator.get_state().clone()
        if hasattr(self.loader, "set_epoch"):
            self.loader.set_epoch(self._epoch)
        it = iter(self.loader)
        for _ in range(skip):
            next(it)
        self._batch_in_epoch = skip
        return it

    # ---- the loop ---------------------------------------------------------------------------------------------
    def run(self) -> Iterator[dict[str, Any]]:
        cfg, acc = self.cfg, self.accelerator
        self._prepare()
        resumed = self._restore() if self.resume_from is not None else None
        start = time.perf_counter()
        yield {
            "type": "start", "total_steps": self.total_steps, "stage1_steps": self.stage1_steps,
            "device": str(acc.device), "precision": acc.mixed_precision, "num_processes": acc.num_processes,
            "train_examples": len(self.data.train), "layer_map": self.layer_map, "distilling": self.distilling,
            "teacher_cache": self.cache_info or None,
        }
        if resumed is not None:
            yield {"type": "resume", "step": self.step, "from": str(self.resume_from)}
        status, message = "completed", ""
        if self.probe is not None and resumed is None:
            yield self._snapshot_event()
        window_start, window_samples = time.perf_counter(), 0
        rng = torch.get_rng_state()
        data_iter = self._epoch_iterator(self._batch_in_epoch)
        if resumed is not None:
            # a DataLoader iterator draws its base seed from the global RNG; the interrupted run drew that at the
            # epoch's start, so the resumed one must not shift its dropout stream by drawing it again
            torch.set_rng_state(rng)
        on_cpu = acc.device.type == "cpu"
        while self.step < self.total_steps:
            if self.should_stop():
                status, message = "stopped", f"stopped by request at step {self.step}"
                break
            stage = 1 if self.step < self.stage1_steps else 2
            if self.step == self.stage1_steps and self.stage1_steps > 0 and not (
                    resumed is not None and self.step == resumed["step"]):
                yield {"type": "stage", "stage": 2, "step": self.step}
            try:
                batch = next(data_iter)
            except StopIteration:
                self._epoch += 1
                data_iter = self._epoch_iterator()
                batch = next(data_iter)
            self._batch_in_epoch += 1
            terms = self._train_step(batch, stage)
            self.step += 1
            window_samples += int(batch["input_ids"].shape[0]) * acc.num_processes
            log_now = self.step == 1 or self.step % cfg.log_every == 0 or self.step == self.total_steps
            if log_now and acc.num_processes > 1:  # the logged losses are those of the global batch
                terms = {k: acc.reduce(v.clone(), reduction="mean") for k, v in terms.items()}
            # a non-finite loss is checked every step on CPU (free) and at log steps on GPU (avoids a sync per step);
            # with several processes only at log steps, where every process sees the same reduced loss and stops
            if (on_cpu and acc.num_processes == 1) or log_now:
                if not torch.isfinite(terms["loss"]).item():
                    status = "diverged"
                    message = (f"loss became {terms['loss'].item()} at step {self.step}; lower the learning rate "
                               f"(lr={cfg.lr:g}) or the loss weights, or turn on gradient clipping")
                    break
            if log_now:
                now = time.perf_counter()
                event = {"type": "step", "stage": stage, "step": self.step, "total_steps": self.total_steps,
                         "epoch": self._epoch, "lr": self.scheduler.get_last_lr()[0],
                         "samples_per_s": window_samples / max(now - window_start, 1e-9),
                         "elapsed": now - start}
                event.update({k: float(v) for k, v in terms.items()})
                window_start, window_samples = now, 0
                yield event
            if stage == 1 and self.step == self.stage1_steps:
                yield from self._eval_events(stage)
            elif cfg.eval_every and self.step % cfg.eval_every == 0 and self.step != self.total_steps:
                yield from self._eval_events(stage)
            if self.probe is not None and self.step % cfg.snapshot_every == 0:
                yield self._snapshot_event()
            if cfg.save_every and self.step % cfg.save_every == 0 and self.step != self.total_steps:
                self._save(f"step-{self.step}")
                self._checkpoint()
                yield {"type": "checkpoint", "step": self.step}
        if status != "diverged":
            if status == "completed":
                final = list(self._eval_events(2 if self.step > self.stage1_steps else 1))
                yield from final
                if not final and self.dev_sets and self.should_stop():
                    status, message = "stopped", "stopped during the final evaluation (the training had finished)"
            self._save("final")
            if status == "stopped" and self.step > 0:
                self._checkpoint()  # a stopped run can be resumed later
                yield {"type": "checkpoint", "step": self.step}
            elif status == "completed" and self.checkpoint_dir is not None and acc.is_main_process:
                shutil.rmtree(self.checkpoint_dir, ignore_errors=True)  # done: the student is the result
        acc.wait_for_everyone()
        yield {"type": "end", "status": status, "step": self.step, "message": message,
               "elapsed": time.perf_counter() - start}


__all__ = ["Distiller", "predict_dataset", "read_trainer_state", "is_disk_full"]


__all__ = ["Distiller", "predict_dataset", "read_trainer_state", "is_disk_full"]
