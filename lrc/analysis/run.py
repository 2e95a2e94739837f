"""One run's analysis with its caches (per student variant, representation, sample size and layer), and a small
registry of recent runs under a memory budget: what the Layers tab asks for."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from accelerate.utils import set_seed

from ..config import StudentConfig
from ..data import load_task_data, make_loader, tokenize
from ..errors import LRCError
from ..models import Projections, build_student, load_classifier, load_tokenizer, resolve_model_path, uniform_layer_map
from ..runs import Run, read_json
from ..tasks import get_task
from .cka import cka_matrix
from .common import DEFAULT_CACHE_MB, REPRESENTATIONS, Progress, _check_representation
from .cosines import mapped_cosines, similarity_matrix
from .maps import Map2D
from .representations import Projector, Representations, collect_all
from .snapshots import read_snapshots


STUDENT_VARIANTS = ("trained", "initial")


@dataclass
class _Models:
    teacher: Any
    tokenizer: Any
    task: Any
    layer_map: list[int]
    students: dict[str, Any] = field(default_factory=dict)
    projectors: dict[str, Projector] = field(default_factory=dict)


class RunAnalysis:
    """Every layer view of one distillation run, computed on first use and cached per run, variant and layer.

    Results are plain dicts with `num_examples`, `seconds` (what computing it took, including the model
    forwards it needed the first time) and `cached` (whether this call was served from the cache).
    The cache is keyed by the model files' modification times, so a run that is re-trained is recomputed.
    """

    def __init__(self, run_path: str | os.PathLike, data_dir: str | None = None, device: str = "cpu",
                 max_seq_length: int | None = None, max_cache_bytes: int | None = None):
        """max_cache_bytes: the layer vectors kept for all sample sizes together; past it, the least recently
        used sizes go first, but the size in use always stays. Default: DEFAULT_CACHE_MB megabytes."""

        self.path = Path(run_path)
        run = Run(self.path, writer=False)
        self.config: dict[str, Any] = run.config
        self.summary: dict[str, Any] = read_json(self.path / "summary.json", {}) or {}
        if not self.config:
            raise LRCError(f"{self.path} is not a run folder (no config.json)")
        if run.kind == "teacher":
            raise LRCError(f"{self.path.name} is a teacher run; pick a distillation run to compare layers")
        if not (self.path / "student" / "config.json").exists():
            raise LRCError(f"run {self.path.name} has no saved student yet")
        self.data_dir = data_dir
        self.device = torch.device(device)
        self.max_seq_length = max_seq_length or int(self.config.get("max_seq_length") or 128)
        self.seed = int(self.config.get("seed", 42))
        self._models: _Models | None = None
        self._cache: dict[tuple, Any] = {}
        self._reps_bytes: OrderedDict[tuple, int] = OrderedDict()  # the cached layer vectors, least recent first
        self.max_cache_bytes = DEFAULT_CACHE_MB * 2**20 if max_cache_bytes is None else int(max_cache_bytes)
        if self.max_cache_bytes < 0:
            raise LRCError(f"max_cache_bytes must be >= 0 (0 keeps only the sample in use); got {max_cache_bytes}")
        self._lock = threading.RLock()

    # -- identity and metadata --
    def fingerprint(self) -> tuple:
        """Changes whenever the saved student or projections change (a resumed or re-run run)."""
        parts = []
        for p in (self.path / "student" / "model.safetensors", self.path / "student" / "pytorch_model.bin",
                  self.path / "projections.safetensors"):
            parts.append(p.stat().st_mtime_ns if p.exists() else 0)
        return tuple(parts)

    @property
    def teacher_spec(self) -> str:
        """The teacher the run distilled from: the summary's, else the `teacher_ready` event of a run still
        going, else the configured one. A run that names none yet (its default teacher is still being
        fine-tuned) is refused rather than compared with the raw bundled backbone."""
        spec = self.summary.get("teacher")
        if not spec:

            ready = [e.get("path") for e in Run(self.path).iter_events() if e.get("type") == "teacher_ready"]
            spec = ready[-1] if ready else self.config.get("teacher")
        if not spec:
            raise LRCError(f"run {self.path.name} does not record its teacher yet; wait until its teacher is ready")
        if not Path(spec).is_absolute() and not Path(spec).exists():
            for base in (self.path.parent, self.path.parent.parent):
                if (base / spec).exists():
                    return str(base / spec)
        return spec

    @property
    def layer_map(self) -> list[int]:
        return list(self.models.layer_map)

    def shape(self) -> dict[str, Any]:
        """Layer counts and layer map from the saved configs alone (no weights loaded): for pickers."""

        if self._models is not None:
            t = self._models.teacher.config.num_hidden_layers
        else:
            t_cfg = read_json(Path(resolve_model_path(self.teacher_spec)) / "config.json", {}) or {}
            t = int(t_cfg.get("num_hidden_layers") or t_cfg.get("n_layers") or 0)
        s_cfg = read_json(self.path / "student" / "config.json", {}) or {}
        s = int(s_cfg.get("num_hidden_layers") or (self.config.get("student") or {}).get("layers") or 0)
        layer_map = self.summary.get("layer_map")
        if layer_map is None:
            layer_map = self.config.get("layer_map") or (uniform_layer_map(s, t) if s and t and s <= t else [])
        return {"teacher_layers": t, "student_layers": s, "layer_map": [int(x) for x in layer_map]}

    # -- loading --
    @property
    def models(self) -> _Models:
        with self._lock:
            if self._models is None:
                self._models = self._load()
            return self._models

    def _load(self) -> _Models:

        task = self._task()
        teacher = load_classifier(self.teacher_spec, task).to(self.device).eval()
        tokenizer = load_tokenizer(self.teacher_spec)
        layer_map = self.summary.get("layer_map")
        if layer_map is None:
            layer_map = self.config.get("layer_map") or uniform_layer_map(
                int(self.config.get("student", {}).get("layers", 4)), teacher.config.num_hidden_layers)
        return _Models(teacher, tokenizer, task, [int(x) for x in layer_map])

    def _task(self):

        name = self.config.get("task", "sst2")
        if name != "custom" and not self.config.get("train_file"):
            return get_task(name)
        return self._data().task

    def student(self, variant: str = "trained"):
        """The trained student (run/student) or the untrained initial one, rebuilt from the run's config."""
        if variant not in STUDENT_VARIANTS:
            raise LRCError(f"student variant must be one of {', '.join(STUDENT_VARIANTS)}; got {variant!r}")
        m = self.models
        with self._lock:
            if variant not in m.students:
                if variant == "trained":

                    model = load_classifier(str(self.path / "student"), m.task)
                    projector = self._saved_projector(model, m)
                else:
                    model, projector = self._initial_student(m)
                m.students[variant] = model.to(self.device).eval()
                m.projectors[variant] = projector
            return m.students[variant], m.projectors[variant]

    def _saved_projector(self, student, m: _Models) -> Projector:
        path = self.path / "projections.safetensors"
        sw, tw = student.config.hidden_size, m.teacher.config.hidden_size
        if path.exists() and m.layer_map:
            return Projector.from_file(path, len(m.layer_map), sw, tw)
        return Projector(sw, tw)

    def _initial_student(self, m: _Models):
        """build_student with the run's shape and seed, plus the projections the Distiller starts from.

        With teacher-layer init (the default when widths match) the encoder is exactly the one training started
        from; with random init it is a fresh draw with the run's seed (the same distribution, maybe not the
        same numbers, since the trainer's RNG state at build time is not recorded).
        """


        shape = StudentConfig(**(self.config.get("student") or {}))
        set_seed(self.seed)
        student, _how = build_student(shape, m.teacher, m.task, m.layer_map)
        uses_reps = bool(self.config.get("use_cos_nce", True)) and float(self.config.get("alpha", 1.0)) > 0 \
            and bool(m.layer_map) and (self.path / "projections.safetensors").exists()
        if not uses_reps:
            return student, Projector(student.config.hidden_size, m.teacher.config.hidden_size)
        proj = Projections(student.config.hidden_size, m.teacher.config.hidden_size, len(m.layer_map),
                           shared=self.config.get("projection") == "shared")
        return student, Projector.from_module(proj, len(m.layer_map), student.config.hidden_size,
                                              m.teacher.config.hidden_size)

    # -- data --
    def _data(self):

        cfg = self.config
        key = ("data",)
        if key not in self._cache:
            data_dir = self.data_dir or cfg.get("data_dir")
            if data_dir and not Path(data_dir).exists():
                data_dir = os.environ.get("GLUE_DIR") or data_dir
            custom = cfg.get("task") == "custom" or bool(cfg.get("train_file"))
            self._cache[key] = load_task_data(
                cfg.get("task", "sst2"), data_dir, 0, 0, self.seed, train_file=cfg.get("train_file"),
                dev_file=cfg.get("dev_file"), text_column=cfg.get("text_column", "text"),
                text_pair_column=cfg.get("text_pair_column"), label_column=cfg.get("label_column", "label"),
                splits=("train", "dev") if custom else ("dev",))
        return self._cache[key]

    def dev_size(self) -> int:
        """How many examples the main dev split has: the most any view can use."""
        return len(self._data().main_dev)

    def examples(self, n: int) -> dict[str, Any]:
        """The first n examples of a seeded shuffle of the main dev split (so 128 is a prefix of 256)."""
        key = ("examples", int(n))
        with self._lock:
            if key not in self._cache:
                dev = self._data().main_dev
                order = np.random.default_rng(self.seed).permutation(len(dev))[: max(1, int(n))]
                ds = dev.select(order.tolist())
                texts = [a if not b else f"{a} ‖ {b}" for a, b in zip(ds["text_a"], ds["text_b"])]
                self._cache[key] = {"dataset": ds, "texts": texts, "labels": list(ds["label"])}
            return self._cache[key]

    def _batches(self, n: int, batch_size: int = 64) -> tuple[list[dict[str, torch.Tensor]], np.ndarray]:
        """The sample tokenized and batched shortest first (little padding), with the order to undo that."""

        key = ("batches", int(n))
        if key not in self._cache:
            tok = tokenize(self.examples(n)["dataset"], self.models.tokenizer, self.max_seq_length)
            order = np.argsort(np.asarray(tok["length"]), kind="stable")
            loader = make_loader(tok.select(order.tolist()), self.models.tokenizer, batch_size, shuffle=False)
            self._cache[key] = (list(loader), order)
        return self._cache[key]

    # -- representations --
    def representations(self, model: str, representation: str, n: int,
                        progress: Progress | None = None) -> Representations:
        """model: "teacher", "trained" or "initial". One forward pass fills all three representations."""
        _check_representation(representation)
        key = ("reps", model, int(n), self.fingerprint() if model == "trained" else None)
        with self._lock:
            if key in self._cache:
                self._reps_bytes.move_to_end(key)
            else:
                who = {"teacher": "teacher", "trained": "trained student", "initial": "initial student"}[model]
                if progress is not None:
                    progress(0.0, f"{who}: loading" if model == "teacher" else f"{who}: building")
                net = self.models.teacher if model == "teacher" else self.student(model)[0]
                if progress is not None:
                    progress(0.0, f"{n} examples: tokenizing")
                batches, order = self._batches(n)
                self._cache[key] = collect_all(net, batches, REPRESENTATIONS, self.device, order, progress,
                                               f"{who}, {n} examples")
                self._reps_bytes[key] = sum(r.nbytes for r in self._cache[key].values())
                self._evict(int(n))
            return self._cache[key][representation]

    def cache_bytes(self) -> int:
        """Bytes of layer vectors held now (the rest of the cache is small: matrices, 2-D maps, token ids)."""
        with self._lock:
            return sum(self._reps_bytes.values())

    def _evict(self, in_use: int) -> None:
        """Drop the least recently used sample sizes (all their vectors and token batches) until the budget holds.

        A size goes as a whole: every view needs the teacher's and the student's vectors together. The size in
        use stays whatever it weighs, or each view would recompute what the one before it needed. Results already
        computed from evicted vectors (matrices, 2-D maps) are small and stay cached.
        """
        while sum(self._reps_bytes.values()) > self.max_cache_bytes:
            oldest = next((key[2] for key in self._reps_bytes if key[2] != in_use), None)
            if oldest is None:
                return
            for key in [k for k in self._reps_bytes if k[2] == oldest]:
                del self._reps_bytes[key]
                self._cache.pop(key, None)
            self._cache.pop(("batches", oldest), None)

    def _cached(self, key: tuple, compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        with self._lock:
            start = time.perf_counter()
            hit = key in self._cache
            if not hit:
                result = compute()
                result["seconds"] = time.perf_counter() - start
                self._cache[key] = result
            result = dict(self._cache[key])
            result["cached"] = hit
            result["lookup_seconds"] = time.perf_counter() - start
            return result

    # -- the views --
    def similarity(self, variant: str = "trained", representation: str = "cls", n: int = 256,
                   progress: Progress | None = None) -> dict[str, Any]:
        """The angular-similarity matrix (teacher layers x student layers) plus the layer map and mapped pairs."""
        key = ("similarity", variant, representation, int(n), self.fingerprint())

        def compute():
            t = self.representations("teacher", representation, n, progress)
            s = self.representations(variant, representation, n, progress)
            if progress is not None:
                progress(0.0, "angular similarity of every layer pair")
            result = similarity_matrix(t, s, self.student(variant)[1])
            result["layer_map"] = self.layer_map
            result["mapped"] = mapped_cosines(result, self.layer_map)
            result["variant"] = variant
            return result

        return self._cached(key, compute)

    def cka(self, variant: str = "trained", representation: str = "cls", n: int = 256,
            batch_size: int = 256, progress: Progress | None = None) -> dict[str, Any]:
        key = ("cka", variant, representation, int(n), int(batch_size), self.fingerprint())

        def compute():
            t = self.representations("teacher", representation, n, progress)
            s = self.representations(variant, representation, n, progress)
            if progress is not None:
                progress(0.0, "linear CKA of every layer pair")
            result = cka_matrix(t, s, batch_size, seed=self.seed)
            result["layer_map"] = self.layer_map
            result["variant"] = variant
            return result

        return self._cached(key, compute)

    def _map(self, teacher_layer: int, representation: str, n: int, method: str, seed: int,
             progress: Progress | None = None):
        key = ("map", teacher_layer, representation, int(n), method, int(seed))
        if key not in self._cache:
            t = self.representations("teacher", representation, n, progress)
            if progress is not None:
                progress(0.0, f"fitting the {method.upper()} map on {t.num_examples} teacher points")
            mapper = Map2D(method, seed)
            xy = mapper.fit(t.example_vectors(teacher_layer))
            self._cache[key] = (mapper, xy)
        return self._cache[key]

    def scatter(self, teacher_layer: int, student_layer: int, variant: str = "trained", representation: str = "cls",
                n: int = 256, method: str = "umap", seed: int = 0, progress: Progress | None = None) -> dict[str, Any]:
        """Teacher points of one layer (the fitted map) and the student's projected points placed into it."""
        key = ("scatter", teacher_layer, student_layer, variant, representation, int(n), method, int(seed),
               self.fingerprint())

        def compute():
            t = self.representations("teacher", representation, n, progress)
            s = self.representations(variant, representation, n, progress)
            if not 0 <= teacher_layer < len(t.layers):
                raise LRCError(f"teacher layer {teacher_layer} does not exist (0..{len(t.layers) - 1})")
            if not 0 <= student_layer < len(s.layers):
                raise LRCError(f"student layer {student_layer} does not exist (0..{len(s.layers) - 1})")
            map_start = time.perf_counter()
            mapper, t_xy = self._map(teacher_layer, representation, n, method, seed, progress)
            projector = self.student(variant)[1]
            if progress is not None:
                progress(0.0, f"placing the student's points in the {mapper.method.upper()} map")
            projected = projector.apply(student_layer, s.example_vectors(student_layer))
            s_xy = mapper.transform(projected) if projected is not None else None
            ex = self.examples(n)
            task = self.models.task
            return {
                "teacher_layer": teacher_layer, "student_layer": student_layer, "variant": variant,
                "method": mapper.method, "requested_method": method, "seed": seed,
                "teacher_xy": t_xy.tolist(), "student_xy": s_xy.tolist() if s_xy is not None else None,
                "labels": [float(x) if task.is_regression else int(x) for x in ex["labels"]],
                "label_names": list(task.label_names), "texts": ex["texts"],
                "teacher_pred": _predictions(t.logits, task), "student_pred": _predictions(s.logits, task),
                "projection_source": projector.source(student_layer), "representation": representation,
                "num_examples": t.num_examples, "map_seconds": time.perf_counter() - map_start,
                "fit_seconds": mapper.fit_seconds,
            }

        return self._cached(key, compute)

    def snapshots(self) -> list[dict[str, Any]]:

        return read_snapshots(Run(self.path).iter_events())

    def stage2_step(self) -> int | None:
        """The step stage 2 began at (from the run's `stage` event), None for a one-stage run."""

        steps = [int(e.get("step", 0)) for e in Run(self.path).iter_events()
                 if e.get("type") == "stage" and "phase" not in e]
        return steps[-1] if steps else None

    def accuracy(self, variant: str, representation: str, n: int) -> dict[str, float | None]:
        """Agreement of the sample's predictions with the gold labels (classification only)."""
        task = self.models.task
        if task.is_regression:
            return {}
        gold = np.asarray(self.examples(n)["labels"])
        out = {}
        for model in ("teacher", variant):
            logits = self.representations(model, representation, n).logits
            out[model] = float((logits.argmax(-1) == gold).mean())
        return out


def _predictions(logits: np.ndarray, task) -> list:
    if task.is_regression or logits.shape[-1] == 1:
        return [round(float(x), 3) for x in logits.reshape(-1)]
    names = list(task.label_names)
    return [names[i] if i < len(names) else str(i) for i in logits.argmax(-1).tolist()]


_ANALYSES: "OrderedDict[tuple, RunAnalysis]" = OrderedDict()
_ANALYSES_LOCK = threading.Lock()


_ANALYSES_BUDGET: int | None = None  # bytes of layer vectors each registered analysis keeps; None: the default


def set_cache_budget(max_bytes: int | None) -> None:
    """The cache budget of every RunAnalysis that get_run_analysis hands out, those already made included.

    An app sets it once from its operator's setting; None restores DEFAULT_CACHE_MB."""
    global _ANALYSES_BUDGET
    if max_bytes is not None and int(max_bytes) < 0:
        raise LRCError(f"the layer cache budget must be >= 0 bytes; got {max_bytes}")
    with _ANALYSES_LOCK:
        _ANALYSES_BUDGET = None if max_bytes is None else int(max_bytes)
        for analysis in _ANALYSES.values():
            with analysis._lock:
                analysis.max_cache_bytes = _budget_bytes()


def _budget_bytes() -> int:
    return DEFAULT_CACHE_MB * 2**20 if _ANALYSES_BUDGET is None else _ANALYSES_BUDGET


def get_run_analysis(run_path: str | os.PathLike, data_dir: str | None = None, max_runs: int = 3) -> RunAnalysis:
    """A process-wide RunAnalysis per run folder (the last `max_runs` kept, so models do not pile up), each
    keeping at most set_cache_budget's budget of layer vectors."""
    path = Path(run_path).resolve()
    config = path / "config.json"
    # a run folder deleted and made again under the same id is another run: its config.json is newer
    key = (str(path), config.stat().st_mtime_ns if config.exists() else 0, data_dir)
    with _ANALYSES_LOCK:
        if key in _ANALYSES:
            _ANALYSES.move_to_end(key)
            return _ANALYSES[key]
        analysis = RunAnalysis(run_path, data_dir=data_dir, max_cache_bytes=_budget_bytes())
        _ANALYSES[key] = analysis
        while len(_ANALYSES) > max_runs:
            _ANALYSES.popitem(last=False)
        return analysis


def clear_run_analyses() -> None:
    with _ANALYSES_LOCK:
        _ANALYSES.clear()
