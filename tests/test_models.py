"""Layer maps, student construction and initialisation, projections, model paths and encoder checks."""

from __future__ import annotations

import json

import pytest
import torch

from lrc.config import StudentConfig
from lrc.errors import ConfigError, ModelLoadError
from lrc.models import (
    Projections,
    build_student,
    bundled_teacher_path,
    check_layer_map,
    is_finetuned_for,
    load_classifier,
    resolve_model_path,
    uniform_layer_map,
)
from lrc.tasks import get_task

from conftest import TEACHER_SHAPE, make_tiny_teacher


@pytest.mark.parametrize("m, n, expected", [
    (4, 12, [3, 6, 9, 12]),
    (2, 6, [3, 6]),
    (3, 6, [2, 4, 6]),
    (6, 6, [1, 2, 3, 4, 5, 6]),
    (1, 4, [4]),
    (3, 4, [1, 2, 4]),
])
def test_uniform_layer_map(m, n, expected):
    assert uniform_layer_map(m, n) == expected


def test_more_student_layers_than_teacher_is_a_config_error():
    with pytest.raises(ConfigError, match="student has 5 layers but the teacher has only 4"):
        uniform_layer_map(5, 4)


def test_check_layer_map():
    check_layer_map([1, 4], 4)
    with pytest.raises(ConfigError, match=r"\[0, 5\]"):
        check_layer_map([0, 2, 5], 4)


# ---- building the student ----------------------------------------------------------------------------------

def test_student_from_teacher_layers_copies_weights(tokenizer):
    teacher = make_tiny_teacher(tokenizer.vocab_size)
    shape = StudentConfig(layers=2, hidden=32, heads=2, ffn=64, init="finetuned_teacher")
    layer_map = uniform_layer_map(2, 4)
    student, how = build_student(shape, teacher, get_task("sst2"), layer_map)
    assert how == "the fine-tuned teacher's layers 2,4"
    s_sd, t_emb = student.bert.embeddings.state_dict(), teacher.bert.embeddings.state_dict()
    assert all(torch.equal(s_sd[k], t_emb[k]) for k in t_emb)
    for m, n in enumerate(layer_map):
        s_layer = student.bert.encoder.layer[m].state_dict()
        t_layer = teacher.bert.encoder.layer[n - 1].state_dict()
        assert all(torch.equal(s_layer[k], t_layer[k]) for k in t_layer)
    # and not some other layer
    other = teacher.bert.encoder.layer[0].state_dict()
    assert not all(torch.equal(student.bert.encoder.layer[0].state_dict()[k], other[k]) for k in other)
    assert student.config.num_hidden_layers == 2 and student.config.id2label == {0: "negative", 1: "positive"}


def test_student_random_when_widths_differ(tokenizer):
    teacher = make_tiny_teacher(tokenizer.vocab_size)
    student, how = build_student(StudentConfig(layers=2, hidden=16, heads=2, ffn=32, init="auto"), teacher,
                                 get_task("mnli"), [2, 4])
    assert how == "random"
    assert student.config.hidden_size == 16 and student.config.num_labels == 3
    assert student.config.vocab_size == teacher.config.vocab_size


def test_student_init_teacher_needs_same_shape(tokenizer):
    teacher = make_tiny_teacher(tokenizer.vocab_size)
    with pytest.raises(ConfigError, match="same hidden size"):
        build_student(StudentConfig(layers=2, hidden=16, heads=2, ffn=32, init="finetuned_teacher"), teacher,
                      get_task("sst2"), [2, 4])
    with pytest.raises(ConfigError, match="student has 6 layers but the teacher has only 4"):
        build_student(StudentConfig(layers=6, hidden=32, heads=2, ffn=64), teacher, get_task("sst2"),
                      [1, 1, 2, 2, 3, 4])


def test_random_init_even_when_widths_match(tokenizer):
    teacher = make_tiny_teacher(tokenizer.vocab_size)
    student, how = build_student(StudentConfig(layers=2, hidden=32, heads=2, ffn=64, init="random"), teacher,
                                 get_task("sst2"), [2, 4])
    assert how == "random"
    assert not torch.equal(student.bert.embeddings.word_embeddings.weight, teacher.bert.embeddings.word_embeddings.weight)


def test_regression_student_has_one_output(tokenizer):
    teacher = make_tiny_teacher(tokenizer.vocab_size, num_labels=1)
    student, _ = build_student(StudentConfig(layers=1, hidden=16, heads=2, ffn=32), teacher, get_task("stsb"), [4])
    assert student.config.num_labels == 1 and student.config.problem_type == "regression"


# ---- projections -------------------------------------------------------------------------------------------

def test_projections_identity_when_widths_match():
    proj = Projections(8, 8, num_layers=3)
    x = torch.randn(2, 5, 8)
    for i in range(3):
        assert torch.allclose(proj(i, x), x)


def test_projections_map_widths_per_layer_or_shared():
    proj = Projections(4, 10, num_layers=3)
    x = torch.randn(2, 4)
    outs = [proj(i, x) for i in range(3)]
    assert all(o.shape == (2, 10) for o in outs)
    assert not torch.allclose(outs[0], outs[1])  # separate maps
    shared = Projections(4, 10, num_layers=3, shared=True)
    assert len(shared.maps) == 1 and torch.equal(shared(0, x), shared(2, x))


# ---- paths and hub ids -------------------------------------------------------------------------------------

def test_resolve_model_path_for_run_folders(tmp_path):
    student_run = tmp_path / "lrc-run"
    (student_run / "student").mkdir(parents=True)
    (student_run / "student" / "config.json").write_text("{}")
    (student_run / "config.json").write_text('{"task": "sst2"}')  # the run's config, not a model's
    assert resolve_model_path(student_run) == str(student_run / "student")
    teacher_run = tmp_path / "teacher-run"
    (teacher_run / "model").mkdir(parents=True)
    (teacher_run / "model" / "config.json").write_text("{}")
    assert resolve_model_path(str(teacher_run)) == str(teacher_run / "model")
    model_dir = tmp_path / "plain"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    assert resolve_model_path(model_dir) == str(model_dir)


def test_resolve_model_path_errors(tmp_path):
    (tmp_path / "weights.bin").write_text("x")
    with pytest.raises(ModelLoadError, match="is a file"):
        resolve_model_path(tmp_path / "weights.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model_path(tmp_path / "empty")
    for missing in ("./no/such/model", "/abs/missing", "~/missing-model", "a/b/c"):
        with pytest.raises(ModelLoadError, match="does not exist"):
            resolve_model_path(missing)
    for bad in ("bad id!", "org/-x", "white space"):
        with pytest.raises(ModelLoadError, match="valid hub id"):
            resolve_model_path(bad)


@pytest.mark.parametrize("hub_id", ["bert-base-uncased", "google/bert_uncased_L-2_H-128_A-2", "org/model.v2"])
def test_hub_ids_pass_through(hub_id):
    assert resolve_model_path(hub_id) == hub_id


def test_bundled_teacher_aliases():
    path = str(bundled_teacher_path())
    for alias in (None, "", "bundled", "bundled:minilm", "minilm"):
        assert resolve_model_path(alias) == path


def test_non_encoder_config_is_rejected(tmp_path):
    from transformers import GPT2Config

    GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=50).save_pretrained(tmp_path / "gpt")
    with pytest.raises(ModelLoadError, match="'gpt2' model; LRC needs a BERT-like encoder"):
        load_classifier(str(tmp_path / "gpt"), get_task("sst2"))


def test_unloadable_hub_id_offline_is_a_model_load_error():
    with pytest.raises(ModelLoadError, match="could not load model"):
        load_classifier("lrc-tests/definitely-not-a-model")


def test_load_classifier_adds_task_head_to_a_bare_encoder(tmp_path, tokenizer):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, **TEACHER_SHAPE)).save_pretrained(tmp_path / "enc")
    model = load_classifier(str(tmp_path / "enc"), get_task("mnli"))
    assert model.config.num_labels == 3 and model.config.id2label[2] == "contradiction"
    assert model.config.hidden_size == TEACHER_SHAPE["hidden_size"]
    reg = load_classifier(str(tmp_path / "enc"), get_task("stsb"))
    assert reg.config.num_labels == 1 and reg.config.problem_type == "regression"


def test_load_classifier_keeps_a_matching_head(tiny_teacher_dir):
    from transformers import AutoModelForSequenceClassification

    model = load_classifier(str(tiny_teacher_dir), get_task("sst2"))
    reference = AutoModelForSequenceClassification.from_pretrained(tiny_teacher_dir)
    assert torch.equal(model.classifier.weight, reference.classifier.weight)


def test_load_classifier_with_other_label_count_is_a_clean_error(tiny_teacher_dir):
    # a 2-label head cannot serve a 3-label task: a ModelLoadError (one line for the CLI), not a crash
    with pytest.raises(ModelLoadError, match="2 label.*needs 3.*fine-tuned on mnli"):
        load_classifier(str(tiny_teacher_dir), get_task("mnli"))


def test_is_finetuned_for(tiny_teacher_dir, tmp_path):
    assert is_finetuned_for(str(tiny_teacher_dir), get_task("sst2"))
    assert not is_finetuned_for(str(tiny_teacher_dir), get_task("mnli"))  # 2 outputs, MNLI needs 3
    assert not is_finetuned_for(None, get_task("sst2"))  # the bundled backbone has no task head
    meta_dir = tmp_path / "m"
    meta_dir.mkdir()
    (meta_dir / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
    (meta_dir / "lrc_model.json").write_text(json.dumps({"task": "rte"}))
    assert is_finetuned_for(str(meta_dir), get_task("rte")) and not is_finetuned_for(str(meta_dir), get_task("wnli"))
