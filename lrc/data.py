"""Load a task's examples (local GLUE folder, the hub, or a user's file), tokenize them, and batch them.

Every source ends as the same `datasets.Dataset` columns: `text_a`, `text_b` (None for single-sentence tasks),
`label` (int id, or float score for regression) and `idx` (the row's position, stable across runs, which keys
the teacher cache).
"""

from __future__ import annotations

import csv
import functools
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import torch
from datasets import Dataset
from torch.utils.data import DataLoader, RandomSampler, SequentialSampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from .errors import DataError
from .tasks import TASKS, TaskSpec, custom_task, get_task

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
datasets.disable_progress_bars()  # tokenizing a few thousand rows takes milliseconds; the run has its own bar


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path | None:
    """`--data-dir`, else the GLUE_DIR environment variable, else None (meaning: the hub)."""
    chosen = data_dir or os.environ.get("GLUE_DIR") or None
    if chosen is None:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise DataError(f"data folder {path} does not exist; pass --data-dir pointing at a GLUE folder (glue_data/)")
    return path


@dataclass
class TaskData:
    task: TaskSpec
    train: Dataset
    dev: dict[str, Dataset]  # "dev", or "dev_matched" and "dev_mismatched" for MNLI

    @property
    def main_dev(self) -> Dataset:
        return next(iter(self.dev.values()))


def load_task_data(
    task: str,
    data_dir: str | os.PathLike | None = None,
    max_train_examples: int = 0,
    max_eval_examples: int = 0,
    seed: int = 42,
    train_file: str | None = None,
    dev_file: str | None = None,
    text_column: str = "text",
    text_pair_column: str | None = None,
    label_column: str = "label",
    splits: tuple[str, ...] = ("train", "dev"),
    data_seed: int = 0,
) -> TaskData:
    """Load train and dev examples, capped to the first N of a seeded shuffle when a cap is given.

    `seed` is accepted for API compatibility; the subset is drawn with `data_seed`.
    """
    if task == "custom" or train_file:
        data = _load_custom(train_file, dev_file, text_column, text_pair_column, label_column)
    else:
        spec = get_task(task)
        folder = resolve_data_dir(data_dir)
        data = _load_local(spec, folder, splits) if folder else _load_hub(spec, splits)
    # caps take a fixed subset (data_seed), not one per training seed: every seed and variant of an experiment
    # must see the same examples, or their scores are not comparable
    data.train = _cap(data.train, max_train_examples, data_seed)
    data.dev = {name: _cap(ds, max_eval_examples, data_seed) for name, ds in data.dev.items()}
    return data


def _cap(ds: Dataset, limit: int, seed: int) -> Dataset:
    if not limit or limit >= len(ds):
        return ds
    return ds.shuffle(seed=seed).select(range(limit))


# ---- local GLUE folders -------------------------------------------------------------------------------------

def _load_local(spec: TaskSpec, folder: Path, splits: tuple[str, ...]) -> TaskData:
    task_dir = folder / spec.local.directory
    if not task_dir.is_dir():
        # accept being pointed at the task folder itself
        if (folder / "train.tsv").exists() or (folder / f"{spec.local.dev_files[0]}.tsv").exists():
            task_dir = folder
        else:
            raise DataError(
                f"{folder} has no {spec.local.directory}/ folder for task {spec.name}; expected the classic GLUE "
                f"layout ({folder}/{spec.local.directory}/train.tsv), or omit --data-dir to use the hub"
            )
    train = _read_glue_tsv(spec, task_dir / "train.tsv") if "train" in splits else _empty()
    dev = {name: _read_glue_tsv(spec, task_dir / f"{name}.tsv") for name in spec.local.dev_files} \
        if "dev" in splits else {}
    return TaskData(spec, train, dev)


def _empty() -> Dataset:
    return Dataset.from_dict({"text_a": [], "text_b": [], "label": [], "idx": []})


def _read_glue_tsv(spec: TaskSpec, path: Path) -> Dataset:
    """Read a GLUE TSV with quoting off (GLUE's fields contain stray quote characters that are data).

    Parsed files are kept per process, keyed by path, size and modification time: SST-2's 67k-row train.tsv
    costs 0.2-0.6 s to parse, paid before every run's first loss point in the app and by every run of an
    experiment. A changed file has a new key, so it is read again.
    """
    if not path.is_file():
        raise DataError(f"missing file {path} (task {spec.name}); check --data-dir")
    if spec.name not in TASKS:  # only registry tasks can be looked up again by name
        return _parse_glue_tsv(spec, path)
    stat = path.stat()
    return _parse_cached(spec.name, str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _parse_cached(task: str, path: str, _size: int, _mtime_ns: int) -> Dataset:
    return _parse_glue_tsv(TASKS[task], Path(path))


def _parse_glue_tsv(spec: TaskSpec, path: Path) -> Dataset:
    fmt = spec.local
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    except UnicodeDecodeError:
        raise DataError(f"{_utf8_error_at(path)}: not UTF-8 text; re-save it as UTF-8") from None
    if fmt.has_header:
        if not rows:
            raise DataError(f"{path} is empty; it needs a header line and at least one example")
        header = [h.strip() for h in rows[0]]
        rows = rows[1:]
        start_line = 2

        def col(field: str | int | None) -> int | None:
            if field is None or isinstance(field, int):
                return field
            if field not in header:
                raise DataError(f"{path} has no column {field!r} (header: {', '.join(header)})")
            return header.index(field)

        ia, ib, il = col(fmt.text_a), col(fmt.text_b), col(fmt.label)
        width = len(header)
    else:
        start_line = 1
        ia, ib, il = fmt.text_a, fmt.text_b, fmt.label
        width = max(x for x in (ia, ib, il) if isinstance(x, int) and x >= 0) + 1
    if not rows:
        raise DataError(f"{path} has no examples")
    text_a, text_b, labels = [], [], []
    for offset, row in enumerate(rows):
        line = start_line + offset
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if (fmt.has_header and len(row) != width) or len(row) < width:
            raise DataError(f"{path}:{line}: expected {width} tab-separated fields, found {len(row)}")
        text_a.append(row[ia])
        text_b.append(row[ib] if ib is not None else None)
        labels.append(_parse_label(spec, row[il].strip(), path, line))
    return Dataset.from_dict({"text_a": text_a, "text_b": text_b, "label": labels, "idx": list(range(len(labels)))})


def _parse_label(spec: TaskSpec, raw: str, path: Path, line: int) -> int | float:
    if raw == "":
        raise DataError(f"{path}:{line}: the label is empty")
    if spec.is_regression:
        try:
            return float(raw)
        except ValueError:
            raise DataError(f"{path}:{line}: score {raw!r} is not a number") from None
    if raw not in spec.local_labels:
        known = ", ".join(sorted(spec.local_labels))
        raise DataError(f"{path}:{line}: unknown label {raw!r} for {spec.name} (expected one of: {known})")
    return spec.local_labels[raw]


# ---- the hub ------------------------------------------------------------------------------------------------

def _load_hub(spec: TaskSpec, splits: tuple[str, ...]) -> TaskData:
    from datasets import load_dataset

    try:
        ds = load_dataset("nyu-mll/glue", spec.hub_config)
    except Exception as exc:  # network, auth, missing config: all mean the same thing to a user
        raise DataError(
            f"could not load GLUE {spec.name} from the Hugging Face hub ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); without internet, pass --data-dir with a "
            f"local GLUE folder or set GLUE_DIR"
        ) from None

    def convert(split: Dataset) -> Dataset:
        return Dataset.from_dict({
            "text_a": split[spec.text_a],
            "text_b": split[spec.text_b] if spec.text_b else [None] * len(split),
            "label": [float(x) for x in split["label"]] if spec.is_regression else list(split["label"]),
            "idx": list(range(len(split))),
        })

    train = convert(ds["train"]) if "train" in splits else _empty()
    dev = {name: convert(ds[hub]) for name, hub in zip(spec.local.dev_files, spec.hub_dev_splits)} \
        if "dev" in splits else {}
    return TaskData(spec, train, dev)


# ---- a user's own file ----------------------------------------------------------------------------------------

def read_table(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of a CSV, TSV or JSONL file as dicts (format from the extension)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".jsonl", ".json"):
            rows = []
            with open(path, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        try:
                            rows.append(json.loads(line))
                        except json.JSONDecodeError as exc:
                            raise DataError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            return rows
        if suffix not in (".csv", ".tsv"):
            raise DataError(f"{path}: unsupported file type {suffix!r}; use .csv, .tsv or .jsonl")
        with open(path, encoding="utf-8-sig", newline="") as fh:
            delimiter = "\t" if suffix == ".tsv" else ","
            quoting = csv.QUOTE_NONE if suffix == ".tsv" else csv.QUOTE_MINIMAL
            return list(csv.DictReader(fh, delimiter=delimiter, quoting=quoting))
    except UnicodeDecodeError:
        raise DataError(f"{_utf8_error_at(path)}: not UTF-8 text; re-save it as UTF-8") from None


def _utf8_error_at(path: Path) -> str:
    """`path:line (byte N)` of the first invalid byte (a text reader's own offset is relative to its 8 KB chunk)."""
    raw = Path(path).read_bytes()
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        return f"{path}:{line} (byte {exc.start})"
    return str(path)


def _load_custom(train_file, dev_file, text_col, pair_col, label_col) -> TaskData:
    if not train_file:
        raise DataError("task 'custom' needs --train-file (CSV, TSV or JSONL) and usually --dev-file")
    train_rows = read_table(train_file)
    dev_rows = read_table(dev_file) if dev_file else []
    if not train_rows:
        raise DataError(f"{train_file} has no rows")
    needed = [c for c in (text_col, pair_col, label_col) if c]
    for name, rows in ((train_file, train_rows), (dev_file, dev_rows)):
        if rows:
            missing = [c for c in needed if c not in rows[0]]
            if missing:
                raise DataError(f"{name} has no column(s) {', '.join(missing)}; its columns: {', '.join(rows[0])}")
    raw_labels = [str(r[label_col]).strip() for r in train_rows + dev_rows]
    regression = _all_float(raw_labels) and len(set(raw_labels)) > 20
    label_names = () if regression else tuple(sorted(set(raw_labels), key=_label_sort_key))
    spec = custom_task(label_names, pair=pair_col is not None)

    def convert(rows: list[dict[str, Any]], name: str) -> Dataset:
        labels = []
        for i, r in enumerate(rows):
            raw = str(r[label_col]).strip()
            if raw == "":
                raise DataError(f"{name}: row {i + 1} has an empty label")
            labels.append(float(raw) if regression else spec.local_labels[raw])
        return Dataset.from_dict({
            "text_a": [str(r[text_col] or "") for r in rows],
            "text_b": [str(r[pair_col] or "") for r in rows] if pair_col else [None] * len(rows),
            "label": labels,
            "idx": list(range(len(rows))),
        })

    train = convert(train_rows, train_file)
    dev = convert(dev_rows, dev_file) if dev_rows else train.select(range(min(len(train), 200)))
    return TaskData(spec, train, {"dev": dev})


def _all_float(values: list[str]) -> bool:
    try:
        [float(v) for v in values]
        return True
    except ValueError:
        return False


def _label_sort_key(value: str):
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


# ---- tokenization and batching --------------------------------------------------------------------------------

def tokenize(ds: Dataset, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Dataset:
    """Token ids (truncated to max_length, not padded: padding happens per batch) plus `labels` and `idx`."""

    def encode(batch: dict[str, list]) -> dict[str, list]:
        pair = batch["text_b"] if any(t is not None for t in batch["text_b"]) else None
        enc = tokenizer(batch["text_a"], pair, truncation=True, max_length=max_length)
        enc["labels"] = batch["label"]
        return enc

    out = ds.map(encode, batched=True, remove_columns=[c for c in ds.column_names if c != "idx"],
                 desc=None, load_from_cache_file=False, keep_in_memory=True)
    out = out.map(lambda ex: {"length": len(ex["input_ids"])}, keep_in_memory=True, load_from_cache_file=False)
    return out


def token_lengths(ds: Dataset, tokenizer: PreTrainedTokenizerBase, batch_size: int = 4096) -> list[int]:
    """Each row's token count without truncation (special tokens included): what a length cap would cut."""
    lengths: list[int] = []
    for start in range(0, len(ds), batch_size):
        part = ds[start:start + batch_size]
        pair = part["text_b"] if any(t is not None for t in part["text_b"]) else None
        enc = tokenizer(part["text_a"], pair, truncation=False, verbose=False)
        lengths.extend(len(ids) for ids in enc["input_ids"])
    return lengths


def encode_texts(tokenizer: PreTrainedTokenizerBase, texts_a: list[str], texts_b: list[str] | None,
                 max_length: int) -> dict[str, torch.Tensor]:
    """Tokenize raw inputs for prediction (padded to the longest, truncated to max_length)."""
    return tokenizer(texts_a, texts_b, truncation=True, max_length=max_length, padding=True, return_tensors="pt")


class _Collator:
    """Pad each batch to its longest row (rounded up to a multiple of 8 for tensor cores)."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase):
        self.inner = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8, return_tensors="pt")

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        feats = [{k: v for k, v in f.items() if k != "length"} for f in features]
        return self.inner(feats)


@functools.lru_cache(maxsize=None)
def _length_grouped_sampler_class():
    from transformers.trainer_pt_utils import LengthGroupedSampler, get_length_grouped_indices

    class LongestBatchAnywhere(LengthGroupedSampler):
        """transformers' length grouping, without its longest-batch-first rule.

        That rule makes an out-of-memory error come at once on a GPU; here OOM is caught and explained anyway, and
        on a CPU it made the first step (the first loss point a user waits for) the slowest of the run, 2.3 s
        instead of about 0.5 s. The longest batch is swapped to a random place drawn from the same generator,
        so the order stays reproducible (and resumable).
        """

        def __iter__(self):
            indices = get_length_grouped_indices(self.lengths, self.batch_size, generator=self.generator)
            n_batches = len(indices) // self.batch_size
            if n_batches > 1:
                j = int(torch.randint(1, n_batches, (1,), generator=self.generator))
                b = self.batch_size
                indices[:b], indices[j * b:(j + 1) * b] = indices[j * b:(j + 1) * b], indices[:b]
            return iter(indices)

    return LongestBatchAnywhere


def _LengthGroupedSampler(*args, **kwargs):  # noqa: N802 - a class made on first use (transformers loads lazily)
    return _length_grouped_sampler_class()(*args, **kwargs)


def make_loader(
    ds: Dataset,
    tokenizer: PreTrainedTokenizerBase,
    batch_size: int,
    shuffle: bool,
    seed: int = 42,
    length_grouping: bool = False,
    drop_last: bool = False,
    num_workers: int = 0,
) -> DataLoader:
    """Dynamic padding; with length grouping, batches hold rows of similar length so little is padding."""
    ds = ds.with_format("python")
    generator = torch.Generator().manual_seed(seed)
    if shuffle and length_grouping:
        sampler = _LengthGroupedSampler(batch_size, dataset=ds, lengths=ds["length"], generator=generator)
    elif shuffle:
        sampler = RandomSampler(ds, generator=generator)
    else:
        sampler = SequentialSampler(ds)
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, collate_fn=_Collator(tokenizer),
                      drop_last=drop_last, num_workers=num_workers)
