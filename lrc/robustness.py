"""Deterministic input noise for robustness checks: character typos, word drops, adjacent word swaps.

The paper claims gradient perturbation makes the student more robust; these corruptions measure it on dev data.
Same seed, same corrupted text, whatever the model, so models are compared on identical inputs.
"""

from __future__ import annotations

import random
import string

from datasets import Dataset

NOISE_KINDS = ("typo", "drop", "swap")


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 2:
        return word
    i = rng.randrange(len(word))
    op = rng.choice(("delete", "insert", "replace", "transpose"))
    if op == "delete":
        return word[:i] + word[i + 1:]
    if op == "insert":
        return word[:i] + rng.choice(string.ascii_lowercase) + word[i:]
    if op == "replace":
        return word[:i] + rng.choice(string.ascii_lowercase) + word[i + 1:]
    j = min(i + 1, len(word) - 1)
    chars = list(word)
    chars[i], chars[j] = chars[j], chars[i]
    return "".join(chars)


def corrupt(text: str | None, kind: str, rate: float, rng: random.Random) -> str | None:
    """Corrupt each word with probability `rate` (typo / drop), or swap that share of adjacent pairs (swap)."""
    if text is None or rate <= 0:
        return text
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind must be one of {NOISE_KINDS}; got {kind!r}")
    words = text.split()
    if kind == "typo":
        words = [_typo(w, rng) if rng.random() < rate else w for w in words]
    elif kind == "drop":
        kept = [w for w in words if rng.random() >= rate]
        words = kept or words[:1]
    else:
        for i in range(len(words) - 1):
            if rng.random() < rate:
                words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def corrupt_dataset(ds: Dataset, kind: str, rate: float, seed: int = 0) -> Dataset:
    """A copy of a dev set with both text columns corrupted, reproducibly."""
    rng = random.Random(f"{seed}-{kind}-{rate}")
    a = [corrupt(t, kind, rate, rng) for t in ds["text_a"]]
    b = [corrupt(t, kind, rate, rng) for t in ds["text_b"]]
    return Dataset.from_dict({"text_a": a, "text_b": b, "label": ds["label"], "idx": ds["idx"]})
