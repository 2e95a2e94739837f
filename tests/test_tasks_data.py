"""The task registry and data loading: local GLUE folders, caps, errors with file:line, custom files, batching."""

from __future__ import annotations

import json

import pytest

from lrc.data import load_task_data, make_loader, read_table, resolve_data_dir, tokenize
from lrc.errors import ConfigError, DataError
from lrc.tasks import TASKS, get_task

from conftest import MNLI_DEV_HEADER, MNLI_TRAIN_HEADER, sentence, write_tsv

# label ids in the Hugging Face hub's nyu-mll/glue order
HUB_LABELS = {
    "cola": ("unacceptable", "acceptable"),
    "sst2": ("negative", "positive"),
    "mrpc": ("not_equivalent", "equivalent"),
    "qqp": ("not_duplicate", "duplicate"),
    "mnli": ("entailment", "neutral", "contradiction"),
    "qnli": ("entailment", "not_entailment"),
    "rte": ("entailment", "not_entailment"),
    "wnli": ("not_entailment", "entailment"),
    "stsb": (),
}


def test_registry_has_nine_tasks_with_hub_label_order():
    assert set(TASKS) == set(HUB_LABELS)
    for name, labels in HUB_LABELS.items():
        assert TASKS[name].label_names == labels
    assert get_task("stsb").is_regression and get_task("stsb").num_labels == 1
    assert get_task("mnli").num_labels == 3 and get_task("mnli").dev_names == ("dev_matched", "dev_mismatched")


def test_task_aliases_and_unknown_task():
    assert get_task("SST-2").name == "sst2" and get_task(" STS-B ").name == "stsb" and get_task("CoLA").name == "cola"
    with pytest.raises(ConfigError, match="unknown task 'glue9'"):
        get_task("glue9")


# ---- every task from local files -------------------------------------------------------------------------------

@pytest.mark.parametrize("task", sorted(HUB_LABELS))
def test_every_task_parses_from_local_tsv(glue_dir, task):
    data = load_task_data(task, glue_dir)
    spec = data.task
    assert spec.name == task
    assert len(data.train) == 24
    assert set(data.dev) == set(spec.dev_names)
    row = data.train[0]
    assert row["text_a"] == sentence(0) + (" ?" if task in ("qqp", "qnli") else "")
    assert (row["text_b"] is None) == (not spec.is_pair)
    assert data.train["idx"] == list(range(24))
    labels = data.train["label"]
    if spec.is_regression:
        assert labels[:3] == pytest.approx([0.0, 0.37, 0.74])
    else:
        assert set(labels) == set(range(spec.num_labels))


def test_label_strings_map_to_hub_ids(glue_dir):
    # the fixture writes label index i % n in hub order, so the ids must come back as 0, 1, (2,) 0, ...
    assert load_task_data("rte", glue_dir).train["label"][:4] == [0, 1, 0, 1]  # entailment, not_entailment
    assert load_task_data("qnli", glue_dir).train["label"][:4] == [0, 1, 0, 1]
    assert load_task_data("mnli", glue_dir).train["label"][:6] == [0, 1, 2, 0, 1, 2]
    assert load_task_data("cola", glue_dir).train["label"][:4] == [0, 1, 0, 1]
    assert load_task_data("mrpc", glue_dir).train["label"][:4] == [0, 1, 0, 1]  # BOM before "Quality" is fine
    assert load_task_data("qqp", glue_dir).train["label"][:4] == [0, 1, 0, 1]


def test_label_words_are_mapped_for_binary_tasks(tmp_path):
    write_tsv(tmp_path / "SST-2" / "train.tsv", ["sentence", "label"], [["a", "positive"], ["b", "negative"]])
    write_tsv(tmp_path / "SST-2" / "dev.tsv", ["sentence", "label"], [["c", "1"]])
    data = load_task_data("sst2", tmp_path)
    assert data.train["label"] == [1, 0] and data.dev["dev"]["label"] == [1]


def test_mnli_has_two_dev_splits_with_their_own_rows(glue_dir):
    data = load_task_data("mnli", glue_dir)
    assert list(data.dev) == ["dev_matched", "dev_mismatched"]
    assert len(data.dev["dev_matched"]) == 8 and len(data.dev["dev_mismatched"]) == 10
    # gold_label (the last column) is the label, not label1 of the annotators
    assert data.dev["dev_mismatched"]["label"][:3] == [1, 2, 0]
    assert data.main_dev is data.dev["dev_matched"]


def test_mnli_gold_label_wins_over_label1(tmp_path):
    rows = []
    for i, (label1, gold) in enumerate([("neutral", "entailment"), ("entailment", "contradiction")]):
        rows.append([str(i), "1", "1e", "fiction", "( a )", "( b )", "(ROOT a)", "(ROOT b)", f"premise {i}",
                     f"hypothesis {i}", label1, gold])
    write_tsv(tmp_path / "MNLI" / "train.tsv", MNLI_TRAIN_HEADER, rows)
    dev_rows = [r[:-2] + [r[-2]] * 5 + [r[-1]] for r in rows]
    for name in ("dev_matched", "dev_mismatched"):
        write_tsv(tmp_path / "MNLI" / f"{name}.tsv", MNLI_DEV_HEADER, dev_rows)
    data = load_task_data("mnli", tmp_path)
    assert data.train["label"] == [0, 2] and data.dev["dev_matched"]["label"] == [0, 2]
    assert data.train["text_a"] == ["premise 0", "premise 1"] and data.train["text_b"][1] == "hypothesis 1"


def test_task_folder_itself_is_accepted(glue_dir):
    data = load_task_data("rte", glue_dir / "RTE")
    assert len(data.train) == 24


def test_glue_dir_env_is_used(glue_dir, monkeypatch):
    monkeypatch.setenv("GLUE_DIR", str(glue_dir))
    assert resolve_data_dir(None) == glue_dir
    assert len(load_task_data("wnli").train) == 24


def test_quotes_are_data_not_quoting(tmp_path):
    write_tsv(tmp_path / "SST-2" / "train.tsv", ["sentence", "label"], [['he said " hi', 1], ['" quoted "', 0]])
    write_tsv(tmp_path / "SST-2" / "dev.tsv", ["sentence", "label"], [["x", 0]])
    assert load_task_data("sst2", tmp_path).train["text_a"] == ['he said " hi', '" quoted "']


# ---- caps --------------------------------------------------------------------------------------------------------

def test_caps_limit_and_are_deterministic(glue_dir):
    a = load_task_data("sst2", glue_dir, max_train_examples=10, max_eval_examples=3, data_seed=7)
    b = load_task_data("sst2", glue_dir, max_train_examples=10, max_eval_examples=3, data_seed=7)
    c = load_task_data("sst2", glue_dir, max_train_examples=10, max_eval_examples=3, data_seed=8)
    assert len(a.train) == 10 and len(a.dev["dev"]) == 3
    assert list(a.train["text_a"]) == list(b.train["text_a"]) and list(a.train["idx"]) == list(b.train["idx"])
    assert list(a.train["idx"]) != list(c.train["idx"])
    assert list(a.train["idx"]) != list(range(10)), "a cap takes a seeded shuffle, not the first rows"
    # idx still names the original row
    full = load_task_data("sst2", glue_dir)
    for row in a.train:
        assert full.train[row["idx"]]["text_a"] == row["text_a"]


def test_caps_do_not_depend_on_the_training_seed(glue_dir):
    # every seed of an experiment must see the same subset, or their scores are not comparable
    a = load_task_data("sst2", glue_dir, max_train_examples=10, seed=1)
    b = load_task_data("sst2", glue_dir, max_train_examples=10, seed=2)
    assert list(a.train["idx"]) == list(b.train["idx"])


def test_cap_larger_than_data_keeps_everything(glue_dir):
    data = load_task_data("mnli", glue_dir, max_train_examples=1000, max_eval_examples=9)
    assert len(data.train) == 24 and len(data.dev["dev_matched"]) == 8 and len(data.dev["dev_mismatched"]) == 9


# ---- errors --------------------------------------------------------------------------------------------------------

def test_wrong_column_count_names_file_and_line(glue_dir):
    path = glue_dir / "RTE" / "train.tsv"
    _set_line(path, 3, "3\tonly one sentence\tentailment")  # line 4 of the file: 3 fields instead of 4
    with pytest.raises(DataError, match=rf"{path}:4: expected 4 tab-separated fields, found 3"):
        load_task_data("rte", glue_dir)


def _set_line(path, index: int, text: str) -> None:
    """Replace line `index` (0-based) of a test-written TSV."""
    lines = path.read_text().splitlines()
    lines[index] = text
    path.write_text("\n".join(lines) + "\n")


def _set_last_field(path, index: int, value: str) -> None:
    """Replace the last tab-separated field (the label) of line `index`."""
    line = path.read_text().splitlines()[index]
    _set_line(path, index, line.rsplit("\t", 1)[0] + "\t" + value)


def test_headerless_short_row_names_line(glue_dir):
    path = glue_dir / "CoLA" / "dev.tsv"
    _set_line(path, 1, "gj04\t1")
    with pytest.raises(DataError, match=rf"{path}:2: expected 4"):
        load_task_data("cola", glue_dir)


def test_unknown_label_names_file_and_line(glue_dir):
    path = glue_dir / "QNLI" / "dev.tsv"
    _set_last_field(path, 5, "maybe")
    with pytest.raises(DataError, match=rf"{path}:6: unknown label 'maybe' for qnli"):
        load_task_data("qnli", glue_dir)


def test_bad_regression_score_and_empty_label(glue_dir):
    path = glue_dir / "STS-B" / "train.tsv"
    _set_last_field(path, 2, "five")
    with pytest.raises(DataError, match=rf"{path}:3: score 'five' is not a number"):
        load_task_data("stsb", glue_dir)
    _set_last_field(path, 2, "")
    with pytest.raises(DataError, match=rf"{path}:3: the label is empty"):
        load_task_data("stsb", glue_dir)


def test_non_utf8_file(glue_dir):
    path = glue_dir / "SST-2" / "train.tsv"
    path.write_bytes(b"sentence\tlabel\nfine\t0\ncaf\xe9 au lait\t1\n")
    with pytest.raises(DataError, match=rf"{path}:3 \(byte 25\): not UTF-8"):
        load_task_data("sst2", glue_dir)


def test_non_utf8_deep_in_a_large_file_names_the_right_line(glue_dir):
    # a text reader decodes in 8 KB chunks, so its own error offset is relative to the chunk: we must not echo it
    path = glue_dir / "SST-2" / "train.tsv"
    lines = [b"sentence\tlabel"] + [b"line number %d is fine\t1" % i for i in range(2000)]
    lines[1500] = b"caf\xe9 au lait\t1"
    data = b"\n".join(lines) + b"\n"
    path.write_bytes(data)
    offset = data.index(b"\xe9")
    with pytest.raises(DataError, match=rf"{path}:1501 \(byte {offset}\)"):
        load_task_data("sst2", glue_dir)
    custom = glue_dir / "custom.csv"
    custom.write_bytes(data.replace(b"\t", b","))
    with pytest.raises(DataError, match=rf"{custom}:1501 \(byte {offset}\)"):
        read_table(custom)


def test_missing_header_column(glue_dir):
    write_tsv(glue_dir / "SST-2" / "train.tsv", ["text", "label"], [["a", 1]])
    with pytest.raises(DataError, match="has no column 'sentence'"):
        load_task_data("sst2", glue_dir)


def test_missing_folder_and_files(glue_dir, tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_task_data("sst2", tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=rf"{empty} has no SST-2/ folder"):
        load_task_data("sst2", empty)
    (glue_dir / "MNLI" / "dev_mismatched.tsv").unlink()
    with pytest.raises(DataError, match="missing file .*dev_mismatched.tsv"):
        load_task_data("mnli", glue_dir)
    (glue_dir / "SST-2" / "train.tsv").write_text("")
    with pytest.raises(DataError, match="empty"):
        load_task_data("sst2", glue_dir)


# ---- custom files ------------------------------------------------------------------------------------------------

def test_custom_csv_with_named_columns(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text('review,sentiment,other\n"great, really",pos,1\nawful,neg,2\nfine,pos,3\n')
    dev = tmp_path / "dev.csv"
    dev.write_text("review,sentiment,other\nbad,neg,9\n")
    data = load_task_data("custom", train_file=str(train), dev_file=str(dev), text_column="review",
                          label_column="sentiment")
    assert data.task.label_names == ("neg", "pos") and not data.task.is_pair
    assert data.train["text_a"] == ["great, really", "awful", "fine"]
    assert data.train["label"] == [1, 0, 1] and data.dev["dev"]["label"] == [0]
    assert data.task.metrics == ("accuracy", "f1")


def test_custom_tsv_pair(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("q\ta\ty\nwho?\tme\tyes\nwhy?\tbecause\tno\nwhat?\tthat\tmaybe\n")
    data = load_task_data("custom", train_file=str(train), text_column="q", text_pair_column="a", label_column="y")
    assert data.task.is_pair and data.train["text_b"] == ["me", "because", "that"]
    assert data.task.label_names == ("maybe", "no", "yes") and data.task.metrics == ("accuracy", "macro_f1")
    assert len(data.dev["dev"]) == 3  # without a dev file the (small) training set stands in


def test_custom_jsonl_numeric_labels_and_regression(tmp_path):
    cls = tmp_path / "cls.jsonl"
    cls.write_text("\n".join(json.dumps({"text": f"t{i}", "label": i % 3}) for i in range(9)) + "\n\n")
    data = load_task_data("custom", train_file=str(cls))
    assert data.task.label_names == ("0", "1", "2") and data.train["label"][:4] == [0, 1, 2, 0]
    reg = tmp_path / "reg.jsonl"
    reg.write_text("\n".join(json.dumps({"text": f"t{i}", "label": i / 10}) for i in range(30)))
    data = load_task_data("custom", train_file=str(reg))
    assert data.task.is_regression and data.train["label"][3] == pytest.approx(0.3)


def test_custom_file_errors(tmp_path):
    train = tmp_path / "train.csv"
    train.write_text("sentence,label\nhi,1\n")
    with pytest.raises(DataError, match="has no column\\(s\\) text; its columns: sentence, label"):
        load_task_data("custom", train_file=str(train))
    with pytest.raises(DataError, match="does not exist"):
        load_task_data("custom", train_file=str(tmp_path / "none.csv"))
    odd = tmp_path / "data.xlsx"
    odd.write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        read_table(odd)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "a", "label": 1}\n{"text": oops}\n')
    with pytest.raises(DataError, match=rf"{bad}:2: not valid JSON"):
        read_table(bad)
    empty_label = tmp_path / "e.csv"
    empty_label.write_text("text,label\na,1\nb,\n")
    with pytest.raises(DataError, match="row 2 has an empty label"):
        load_task_data("custom", train_file=str(empty_label))
    with pytest.raises(DataError, match="--train-file"):
        load_task_data("custom")


# ---- tokenize and batch ------------------------------------------------------------------------------------------

def test_tokenize_truncates_and_keeps_labels(glue_dir, tokenizer):
    data = load_task_data("rte", glue_dir)
    tok = tokenize(data.train, tokenizer, max_length=8)
    assert set(tok.column_names) >= {"input_ids", "attention_mask", "labels", "idx", "length"}
    assert max(tok["length"]) == 8
    assert tok["labels"] == data.train["label"] and tok["idx"] == data.train["idx"]
    # a pair is encoded as one sequence with two segments
    assert 1 in tok[0]["token_type_ids"]


def test_loader_pads_to_multiple_of_8(glue_dir, tokenizer):
    data = load_task_data("sst2", glue_dir)
    tok = tokenize(data.train, tokenizer, max_length=32)
    loader = make_loader(tok, tokenizer, batch_size=5, shuffle=False)
    lengths = tok["length"]
    for i, batch in enumerate(loader):
        width = batch["input_ids"].shape[1]
        longest = max(lengths[i * 5:(i + 1) * 5])
        assert width % 8 == 0 and longest <= width < longest + 8
        assert batch["attention_mask"].sum(1).tolist() == lengths[i * 5:(i + 1) * 5]
        assert batch["labels"].dtype.is_floating_point is False and "length" not in batch
        assert set(batch) >= {"input_ids", "attention_mask", "labels", "idx"}


def test_loader_shuffles_with_seed_and_groups_lengths(glue_dir, tokenizer):
    tok = tokenize(load_task_data("sst2", glue_dir).train, tokenizer, max_length=32)

    def order(**kw):
        return [i for b in make_loader(tok, tokenizer, batch_size=4, shuffle=True, **kw) for i in b["idx"].tolist()]

    assert order(seed=3) == order(seed=3) and order(seed=3) != order(seed=4)
    assert sorted(order(seed=3, length_grouping=True)) == list(range(24))


def test_regression_labels_are_floats(glue_dir, tokenizer):
    tok = tokenize(load_task_data("stsb", glue_dir).train, tokenizer, max_length=16)
    batch = next(iter(make_loader(tok, tokenizer, batch_size=4, shuffle=False)))
    assert batch["labels"].dtype.is_floating_point
    assert batch["labels"].tolist() == pytest.approx([0.0, 0.37, 0.74, 1.11])


def test_length_grouping_does_not_put_the_longest_batch_first(tmp_path, tokenizer):
    """transformers' sampler starts with the longest batch (the slowest first step); ours places it at random,
    reproducibly, and still yields every row once in batches of similar length."""
    from datasets import Dataset

    from lrc.data import make_loader, tokenize

    texts = [" ".join(["word"] * (1 + (i * 7) % 40)) for i in range(96)]
    ds = tokenize(Dataset.from_dict({"text_a": texts, "text_b": [None] * 96, "label": [i % 2 for i in range(96)],
                                     "idx": list(range(96))}), tokenizer, 64)
    longest = max(ds["length"])
    firsts, orders = [], []
    for seed in range(8):
        loader = make_loader(ds, tokenizer, 8, shuffle=True, seed=seed, length_grouping=True)
        batches = [b["idx"].tolist() for b in loader]
        assert sorted(i for b in batches for i in b) == list(range(96))
        firsts.append(max(ds["length"][i] for i in batches[0]) == longest)
        orders.append(batches)
    assert not all(firsts)
    again = [b["idx"].tolist() for b in make_loader(ds, tokenizer, 8, shuffle=True, seed=3, length_grouping=True)]
    assert again == orders[3]


def test_parsed_files_are_reused_until_the_file_changes(glue_dir):
    first = load_task_data("sst2", glue_dir)
    again = load_task_data("sst2", glue_dir)
    assert again.train is first.train, "an unchanged file is not parsed again"
    train = glue_dir / "SST-2" / "train.tsv"
    train.write_text(train.read_text() + "one more fine sentence\t1\n")
    changed = load_task_data("sst2", glue_dir)
    assert len(changed.train) == len(first.train) + 1
