"""Predictions for raw text with any saved classifier: label probabilities (or a score), latency, truncation.

Models are cached with a bound (least recently used out), so an app serving many requests does not reload
weights per call nor grow without limit.
"""

from __future__ import annotations

import threading
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import LRCError
from .models import LoadedModel, count_parameters, load_for_inference, resolve_model_path

MAX_CHARS = 100_000


@dataclass
class Prediction:
    label: str
    probabilities: dict[str, float]  # empty for regression
    score: float | None  # regression output
    latency_ms: float
    truncated: bool
    num_tokens: int
    params: int = 0
    notes: list[str] = field(default_factory=list)


class ModelCache:
    def __init__(self, capacity: int = 4):
        self.capacity = capacity
        self._models: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, spec: str) -> LoadedModel:
        path = resolve_model_path(spec)
        with self._lock:
            key = str(Path(path).resolve()) if Path(path).exists() else path
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        loaded = load_for_inference(path)
        with self._lock:
            self._models[key] = loaded
            while len(self._models) > self.capacity:
                self._models.popitem(last=False)
        return loaded

    def __len__(self) -> int:
        return len(self._models)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()


DEFAULT_CACHE = ModelCache()


def clean_text(text: str | None) -> str:
    """Drop control characters and lone surrogates (as spaces) and cap the length before tokenizing: a pasted
    binary blob or a megabyte of text must cost a bounded amount and never crash the tokenizer."""
    if text is None:
        return ""
    text = str(text)[:MAX_CHARS]
    return "".join(" " if unicodedata.category(ch) in ("Cc", "Cs") else ch for ch in text).strip()


def has_visible_text(text: str) -> bool:
    """Whether anything is left for the model once the tokenizer drops format, control and space characters
    (zero-width spaces, direction marks): such a text is empty in all but name."""
    return any(unicodedata.category(ch)[0] not in "CZ" for ch in text)


def _check_inputs(a: str, b: str | None, pair: bool) -> None:
    if not has_visible_text(a):
        raise LRCError("the text is empty (only spaces, control or invisible characters); type a sentence")
    if pair and (b is None or not has_visible_text(b)):
        raise LRCError("this is a sentence-pair model: the second sentence is empty; fill in both sentences")


def labels_of(model) -> list[str]:
    cfg = model.config
    if cfg.num_labels == 1:
        return []
    id2label = getattr(cfg, "id2label", None) or {}
    return [str(id2label.get(i, id2label.get(str(i), f"LABEL_{i}"))) for i in range(cfg.num_labels)]


def predict(spec_or_loaded: str | LoadedModel, text_a: str, text_b: str | None = None, max_length: int = 128,
            cache: ModelCache | None = None) -> Prediction:
    """One prediction. Empty text is an error; over-long text is truncated and says so."""
    loaded = spec_or_loaded if isinstance(spec_or_loaded, LoadedModel) else (cache or DEFAULT_CACHE).get(spec_or_loaded)
    a = clean_text(text_a)
    b = clean_text(text_b) if text_b is not None else None
    _check_inputs(a, b, text_b is not None)
    cut = [f"text cut to its first {MAX_CHARS:,} characters" for t in (text_a, text_b)
           if t is not None and len(str(t)) > MAX_CHARS][:1]
    tok = loaded.tokenizer
    full = tok(a, b, truncation=False)["input_ids"]
    truncated = len(full) > max_length
    inputs = tok(a, b, truncation=True, max_length=max_length, return_tensors="pt")
    device = next(loaded.model.parameters()).device
    inputs = {k: v.to(device) for k, v in inputs.items()}
    start = time.perf_counter()
    with torch.inference_mode():
        logits = loaded.model(**inputs).logits[0].float().cpu()
    latency = (time.perf_counter() - start) * 1000
    names = labels_of(loaded.model)
    notes = cut + ([f"input truncated from {len(full)} to {max_length} tokens"] if truncated else [])
    params = count_parameters(loaded.model)
    if not names:
        score = float(logits[0])
        return Prediction(f"{score:.3f}", {}, score, latency, truncated, int(inputs["input_ids"].shape[1]), params, notes)
    probs = torch.softmax(logits, -1).tolist()
    best = int(torch.tensor(probs).argmax())
    return Prediction(names[best], dict(zip(names, probs)), None, latency, truncated,
                      int(inputs["input_ids"].shape[1]), params, notes)
