"""The teacher cache: the frozen teacher's outputs for the training set, computed once and reused.

The teacher never changes during distillation, so running it every step of every epoch (and of every run with the
same teacher and data) repeats the same work. The cache stores, per training example, the teacher's logits and its
representation at each mapped layer, as safetensors on disk:

    logits   [N, C]
    layer_i  [T, D] (tokens: every real token of every example, concatenated; `offsets` [N+1] says where each
             example's tokens start) or [N, D] (cls / mean)

Only real tokens are stored (no padding), so SST-2's short sentences cost ~13 tokens each, not max_length. The key
covers everything that changes the numbers: teacher weights, tokenizer, data, max length, representation, layer
map and dtype. A different key is a different file: nothing stale is ever read.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file

from .data import make_loader
from .losses import represent

DEFAULT_DIR = Path(os.environ.get("LRC_CACHE_DIR", Path.home() / ".cache" / "lrc" / "teacher"))


def _teacher_fingerprint(teacher_path: str | None) -> str:
    """Weights identity without hashing gigabytes: file names, sizes and mtimes of the teacher folder."""
    if teacher_path and Path(teacher_path).is_dir():
        parts = [(p.name, p.stat().st_size, int(p.stat().st_mtime)) for p in sorted(Path(teacher_path).iterdir())
                 if p.is_file()]
        return json.dumps(parts)
    return str(teacher_path)


def _weights_fingerprint(teacher) -> bytes:
    """A cheap digest of the weights themselves, so two in-memory teachers never share a key."""
    with torch.no_grad():
        sums = torch.stack([p.detach().double().sum() for p in teacher.parameters()])
    return teacher.config.to_json_string().encode() + bytes(memoryview(sums.cpu().numpy()))


def cache_key(teacher_path: str | None, train: Dataset, max_length: int, representation: str,
              layer_map: list[int], dtype: torch.dtype, teacher=None) -> str:
    h = hashlib.sha256()
    h.update(_teacher_fingerprint(teacher_path).encode())
    if teacher is not None:
        h.update(_weights_fingerprint(teacher))
    h.update(json.dumps([max_length, representation, list(layer_map), str(dtype), len(train)]).encode())
    # the exact token ids: a different subset, tokenizer or truncation gives a different key
    for ids in train["input_ids"]:
        h.update(len(ids).to_bytes(4, "little"))
        h.update(bytes(memoryview(torch.tensor(ids, dtype=torch.int32).numpy())))
    return h.hexdigest()[:24]


@dataclass
class TeacherCache:
    logits: torch.Tensor  # [N, C]
    layers: list[torch.Tensor]  # per mapped layer: [T, D] (tokens) or [N, D]
    offsets: torch.Tensor | None  # [N + 1] for tokens
    tokens: bool

    def lookup(self, idx: torch.Tensor, length: int, device: torch.device, dtype: torch.dtype
               ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits `[B, C]` and per-layer representations for the examples `idx`, padded to `length` tokens."""
        idx_cpu = idx.cpu()
        logits = self.logits[idx_cpu].to(device=device, dtype=torch.float32, non_blocking=True)
        if not self.tokens:
            return logits, [x[idx_cpu].to(device=device, dtype=dtype, non_blocking=True) for x in self.layers]
        starts, ends = self.offsets[idx_cpu], self.offsets[idx_cpu + 1]
        lengths = ends - starts
        b = idx_cpu.shape[0]
        positions = torch.arange(length)
        valid = positions[None, :] < lengths[:, None]  # [B, L]
        rows = (starts[:, None] + positions[None, :]).clamp_max(self.offsets[-1] - 1)  # [B, L]
        out = []
        for x in self.layers:
            gathered = x[rows.reshape(-1)].reshape(b, length, -1)
            gathered = gathered * valid[..., None].to(gathered.dtype)
            out.append(gathered.to(device=device, dtype=dtype, non_blocking=True))
        return logits, out

    def negatives(self, rows: torch.Tensor, k: int, length: int, device: torch.device,
                  generator: torch.Generator) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """K teacher vectors per sample drawn from the whole training set, never the sample itself.

        This is the `bank` negatives mode when a cache exists: the bank is every training example. Returns per
        layer `[B, K, L, D]` (tokens) or `[B, K, D]`, and for tokens the `[B, K, L]` mask of real positions.
        """
        b, n = rows.shape[0], self.logits.shape[0]
        pick = torch.randint(0, n - 1, (b, k), generator=generator)
        pick = pick + (pick >= rows.cpu()[:, None]).long()  # skip the sample's own row
        flat = pick.reshape(-1)
        _, layers = self.lookup(flat, length, device, torch.float32)
        if not self.tokens:
            return [x.reshape(b, k, -1) for x in layers], None
        lengths = (self.offsets[flat + 1] - self.offsets[flat]).reshape(b, k)
        mask = (torch.arange(length)[None, None, :] < lengths[..., None]).to(device)
        return [x.reshape(b, k, length, -1) for x in layers], mask


def build_or_load(teacher, teacher_path: str | None, train: Dataset, tokenizer, layer_map: list[int],
                  representation: str, max_length: int, device: torch.device, batch_size: int = 128,
                  cache_dir: Path | None = None, progress=None) -> tuple[TeacherCache, bool]:
    """Load the cache for this key, or compute and save it. Returns (cache, was_cached)."""
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    key = cache_key(teacher_path, train, max_length, representation, layer_map, dtype, teacher)
    folder = Path(cache_dir or DEFAULT_DIR)
    path = folder / f"{key}.safetensors"
    tokens = representation == "tokens"
    if path.exists():
        try:
            data = load_file(str(path))
            layers = [data[f"layer_{i}"] for i in range(len(layer_map))]
            return TeacherCache(data["logits"], layers, data.get("offsets"), tokens), True
        except Exception:  # a damaged file (e.g. a crash mid-write on another system): rebuild it
            path.unlink(missing_ok=True)
    loader = make_loader(train, tokenizer, batch_size, shuffle=False)
    logits_parts: list[torch.Tensor] = []
    layer_parts: list[list[torch.Tensor]] = [[] for _ in layer_map]
    lengths: list[int] = []
    teacher.eval()
    with torch.no_grad():
        for n, batch in enumerate(loader):
            mask = batch["attention_mask"].to(device)
            inputs = {k: batch[k].to(device) for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
            with torch.autocast(device.type, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32,
                                enabled=device.type == "cuda"):
                out = teacher(**inputs, output_hidden_states=True)
            logits_parts.append(out.logits.float().cpu())
            for i, layer in enumerate(layer_map):
                rep = represent(out.hidden_states[layer], mask, representation)
                if tokens:
                    rep = rep[mask.bool()]  # [tokens in batch, D], example-major order
                layer_parts[i].append(rep.to(dtype).cpu())
            if tokens:
                lengths.extend(mask.sum(1).tolist())
            if progress is not None:
                progress(n + 1, len(loader))
    tensors: dict[str, torch.Tensor] = {"logits": torch.cat(logits_parts)}
    for i, parts in enumerate(layer_parts):
        tensors[f"layer_{i}"] = torch.cat(parts).contiguous()
    offsets = None
    if tokens:
        offsets = torch.zeros(len(lengths) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(torch.tensor(lengths, dtype=torch.long), 0)
        tensors["offsets"] = offsets
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{key}.tmp"
    save_file(tensors, str(tmp), metadata={"representation": representation, "layer_map": json.dumps(layer_map)})
    os.replace(tmp, path)
    layers = [tensors[f"layer_{i}"] for i in range(len(layer_map))]
    return TeacherCache(tensors["logits"], layers, offsets, tokens), False


def describe(cache: TeacherCache) -> dict[str, Any]:
    size = sum(t.numel() * t.element_size() for t in [cache.logits, *cache.layers])
    return {"examples": int(cache.logits.shape[0]), "bytes": int(size), "tokens": cache.tokens}
