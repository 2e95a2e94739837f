"""A transfer set: more inputs for the teacher to label, so a small student learns from more than the task's rows.

Distillation needs no gold labels: the teacher's outputs (and its layers, for COS-NCE) are the targets. A task
with a few thousand labelled rows (MRPC, RTE, STS-B, CoLA) leaves a 2-layer student short of examples, so the
student may also see:

- `words`: TinyBERT-style augmentation (Jiao et al., 2020). Each row is copied `transfer_factor` times, and each
  word of a copy is replaced with probability `transfer_prob` by one of its 15 nearest neighbours in the
  teacher's own input-embedding table (cosine). TinyBERT uses a masked LM for one-piece words and GloVe for the
  rest; the bundled backbone has no masked-LM head and no GloVe is available offline, while its embedding table
  gives good neighbours (good -> excellent, great, nice; movie -> film, cinema). Words the vocabulary splits into
  pieces are kept as they are.
- `tasks`: inputs of the other GLUE tasks in the same data folder, of the same shape (sentences for a
  one-sentence task, sentence pairs for a pair task), `transfer_factor` times the task's row count at most.

Transfer rows carry no label (-100, or NaN for a score): the hard loss skips them, the soft loss and COS-NCE use
them. A transfer set is made once per task, data, method and size and kept in $LRC_CACHE_DIR/transfer (default
~/.cache/lrc/transfer), so every seed and variant of an experiment sees the same rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from pathlib import Path

import torch
from datasets import Dataset, concatenate_datasets

from .data import TaskData, load_task_data, resolve_data_dir
from .errors import DataError
from .losses import UNLABELLED
from .runs import atomic_write_text
from .tasks import TASKS

NEIGHBOURS = 15
TRANSFER_SEED = 0  # one transfer set per task and settings, whatever the student's seed
_WORD = re.compile(r"^[a-z]+$")
_SPLIT = re.compile(r"(\s+)")


def cache_dir() -> Path:
    root = os.environ.get("LRC_CACHE_DIR") or Path.home() / ".cache" / "lrc"
    return Path(root) / "transfer"


def add_transfer_set(data: TaskData, method: str, factor: int, prob: float, embeddings: torch.Tensor,
                     tokenizer, data_dir: str | None = None) -> tuple[TaskData, int]:
    """`data` with its transfer rows appended to the training set (built or read from the cache); returns the
    new data and how many rows were added."""
    if method == "none" or factor <= 0:
        return data, 0
    rows = load_or_build(data, method, factor, prob, embeddings, tokenizer, data_dir)
    if not rows:
        return data, 0
    start = len(data.train)
    missing = float("nan") if data.task.is_regression else UNLABELLED
    extra = Dataset.from_dict({
        "text_a": [r[0] for r in rows], "text_b": [r[1] for r in rows], "label": [missing] * len(rows),
        "idx": list(range(start, start + len(rows))),
    }).cast(data.train.features)
    return TaskData(data.task, concatenate_datasets([data.train, extra]), data.dev), len(rows)


def load_or_build(data: TaskData, method: str, factor: int, prob: float, embeddings: torch.Tensor, tokenizer,
                  data_dir: str | None) -> list[tuple[str, str | None]]:
    key = _cache_key(data, method, factor, prob, tokenizer)
    path = cache_dir() / f"{data.task.name}-{method}-{key}.jsonl"
    if path.exists():
        try:
            return [tuple(json.loads(line)) for line in path.read_text(encoding="utf-8").splitlines() if line]
        except (OSError, json.JSONDecodeError, TypeError):
            pass  # a damaged cache file is made again
    if method == "words":
        rows = word_replacements(data, factor, prob, embeddings, tokenizer)
    elif method == "tasks":
        rows = other_tasks(data, factor, data_dir)
    else:
        raise DataError(f"unknown transfer method {method!r}; use none, words or tasks")
    try:
        atomic_write_text(path, "".join(json.dumps(list(r)) + "\n" for r in rows))
    except OSError:
        pass  # a read-only home: the set is used without being kept
    return rows


def _cache_key(data: TaskData, method: str, factor: int, prob: float, tokenizer) -> str:
    digest = hashlib.sha1()
    for a, b in zip(data.train["text_a"], data.train["text_b"]):
        digest.update(f"{a}\t{b}\n".encode())
    digest.update(json.dumps([method, factor, prob, NEIGHBOURS, TRANSFER_SEED, tokenizer.vocab_size]).encode())
    return digest.hexdigest()[:12]


# ---- words: neighbours in the embedding table ----------------------------------------------------------------------

def neighbour_table(words: set[str], embeddings: torch.Tensor, tokenizer, k: int = NEIGHBOURS
                    ) -> dict[str, list[str]]:
    """For each one-piece alphabetic word: its k nearest whole-word tokens by cosine in the embedding table."""
    vocab = tokenizer.get_vocab()
    whole = [(tok, i) for tok, i in vocab.items() if _WORD.match(tok)]
    cand_ids = torch.tensor([i for _t, i in whole])
    cand_names = [t for t, _i in whole]
    table = torch.nn.functional.normalize(embeddings.detach().float()[cand_ids], dim=-1)
    wanted = sorted(w for w in words if w in vocab and _WORD.match(w))
    out: dict[str, list[str]] = {}
    position = {name: n for n, name in enumerate(cand_names)}
    for start in range(0, len(wanted), 1024):
        chunk = wanted[start:start + 1024]
        query = table[[position[w] for w in chunk]]
        top = (query @ table.T).topk(k + 1, dim=-1).indices
        for word, row in zip(chunk, top.tolist()):
            out[word] = [cand_names[j] for j in row if cand_names[j] != word][:k]
    return out


def word_replacements(data: TaskData, factor: int, prob: float, embeddings: torch.Tensor, tokenizer
                      ) -> list[tuple[str, str | None]]:
    rng = random.Random(TRANSFER_SEED)
    texts = list(zip(data.train["text_a"], data.train["text_b"]))
    words = {w.lower() for a, b in texts for t in (a, b) if t for w in t.split()}
    table = neighbour_table(words, embeddings, tokenizer)

    def vary(text: str | None) -> str | None:
        if not text:
            return text
        parts = _SPLIT.split(text)
        for n, part in enumerate(parts):
            options = table.get(part.lower())
            if options and rng.random() < prob:
                parts[n] = rng.choice(options)
        return "".join(parts)

    rows = []
    for a, b in texts:
        for _ in range(factor):
            new = (vary(a), vary(b))
            if new != (a, b):
                rows.append(new)
    return rows


# ---- tasks: the other tasks' inputs ------------------------------------------------------------------------------

def other_tasks(data: TaskData, factor: int, data_dir: str | None) -> list[tuple[str, str | None]]:
    """Inputs of the other tasks in the local GLUE folder with the same shape as this task's (a one-sentence task
    takes every sentence, a pair task the pairs), shuffled, at most factor x the task's rows."""
    folder = resolve_data_dir(data_dir)
    if folder is None:
        raise DataError("transfer 'tasks' reads the other tasks from a local GLUE folder; pass --data-dir")
    pair = data.task.is_pair
    pool: list[tuple[str, str | None]] = []
    for name, spec in TASKS.items():
        if name == data.task.name or not (folder / spec.local.directory / "train.tsv").exists():
            continue
        other = load_task_data(name, folder, splits=("train",)).train
        for a, b in zip(other["text_a"], other["text_b"]):
            if pair and b is not None:
                pool.append((a, b))
            elif not pair:
                pool.extend((t, None) for t in (a, b) if t)
    random.Random(TRANSFER_SEED).shuffle(pool)
    return pool[: factor * len(data.train)]
