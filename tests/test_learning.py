"""What makes teachers and students learn (issue: per-task teacher recipes, pre-trained student init, the
transfer set): the default teacher's recipe and rows, the data's sequence length, mean pooling, the student's
initialisation, shared negatives across the two passes, the constant-answer check and the perturbation norms."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, BertModel

import lrc.train
from lrc import recipes
from lrc.config import StudentConfig
from lrc.data import load_task_data
from lrc.heads import BertForSequenceClassificationMeanPool
from lrc.metrics import beats_constant, constant_score
from lrc.models import build_student, load_classifier, uniform_layer_map
from lrc.perturb import perturb_embeddings
from lrc.pipeline import run_distill, teacher_config
from lrc.runs import RunStore
from lrc.tasks import get_task

from conftest import TEACHER_SHAPE, make_tiny_teacher, tiny_config


@pytest.fixture
def pretrained_dir(tmp_path, tokenizer):
    """A tiny "pre-trained" encoder (no task head), saved like a hub backbone."""
    path = tmp_path / "pretrained"
    torch.manual_seed(7)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=128, **TEACHER_SHAPE)
              ).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# ---- the teacher's recipe -----------------------------------------------------------------------------------------

def test_each_task_gets_its_recipe_or_its_familys():
    for name in ("sst2", "cola", "mrpc", "stsb", "rte", "qqp", "mnli", "qnli", "wnli"):
        task = get_task(name)
        expected = recipes.TASK_RECIPES.get(name) or recipes.FAMILY_RECIPES[recipes.family(task)]
        assert recipes.recipe_for(task) == expected
    assert recipes.family(get_task("stsb")) == "regression" and recipes.family(get_task("cola")) == "single"
    assert all(name not in recipes.TASK_RECIPES for name in recipes.HELD_OUT)  # held out: the family's recipe


def test_teacher_config_takes_the_recipe_unless_a_knob_says_otherwise():
    task = get_task("mrpc")
    recipe = recipes.recipe_for(task)
    student = tiny_config(task="mrpc", max_train_examples=100, epochs=9.0, lr=1e-3, batch_size=4, seed=5)
    tcfg = teacher_config(student, task)
    assert (tcfg.epochs, tcfg.lr, tcfg.batch_size, tcfg.warmup_ratio) == (recipe.epochs, recipe.lr, recipe.batch_size,
                                                                         recipe.warmup_ratio)
    assert tcfg.max_train_examples == 0 and tcfg.seed == recipes.TEACHER_SEED  # all rows, one teacher per task
    assert not tcfg.use_cos_nce and not tcfg.perturb and tcfg.gamma == 1.0
    mine = teacher_config(student.override(teacher_epochs=0.5, teacher_lr=2e-5, teacher_batch_size=8,
                                           teacher_max_train_examples=50), task)
    assert (mine.epochs, mine.lr, mine.batch_size, mine.max_train_examples) == (0.5, 2e-5, 8, 50)


def test_the_default_teacher_run_records_its_recipe(shared_glue_dir, pretrained_dir, tmp_path):
    cfg = tiny_config(data_dir=str(shared_glue_dir), teacher=str(pretrained_dir), max_steps=2, max_train_examples=8,
                      max_eval_examples=4, teacher_epochs=1.0, teacher_batch_size=8)
    store = RunStore(tmp_path / "runs")
    run = store.create(cfg, run_id="student")
    events = list(run_distill(cfg, run, store=store))
    (ready,) = [e for e in events if e["type"] == "teacher_ready"]
    teacher = store.get(ready["path"].rsplit("/", 1)[-1])
    recipe = recipes.recipe_for(get_task("sst2"))
    assert teacher.kind == "teacher" and teacher.config["lr"] == recipe.lr
    assert teacher.config["batch_size"] == 8 and teacher.config["epochs"] == 1.0  # the knobs over the recipe
    assert teacher.summary["train_examples"] == 32  # every row of the task, the student had 8
    assert ready["score"] == teacher.summary["score"]


# ---- sequence length from the data --------------------------------------------------------------------------------

def test_length_from_data_is_the_99th_percentile_rounded_up_to_8():
    assert recipes.length_from_data([10] * 99 + [300], cap=128) == 16
    assert recipes.length_from_data(list(range(1, 101)), cap=128) == 104  # 99th value is 99 -> 104
    assert recipes.length_from_data([500] * 10, cap=128) == 128
    assert recipes.length_from_data([3], cap=128) == 8


def test_a_run_without_a_length_takes_it_from_its_data(shared_glue_dir, tiny_teacher_dir, tmp_path, tokenizer):
    cfg = tiny_config(data_dir=str(shared_glue_dir), teacher=str(tiny_teacher_dir), max_seq_length=None,
                      max_train_examples=16, max_eval_examples=4)
    store = RunStore(tmp_path / "runs")
    run = store.create(cfg, run_id="auto-length")
    list(run_distill(cfg, run, store=store))
    data = load_task_data("sst2", shared_glue_dir, max_train_examples=16)
    lengths = [len(tokenizer(t)["input_ids"]) for t in data.train["text_a"]]
    assert run.summary["max_seq_length"] == recipes.length_from_data(lengths, 128)
    assert run.config["max_seq_length"] is None  # config.json keeps what was asked
    saved = json.loads((run.path / "student" / "lrc_model.json").read_text())
    assert saved["max_seq_length"] == run.summary["max_seq_length"]


# ---- pooling ----------------------------------------------------------------------------------------------------

def test_a_mean_pooled_teacher_saves_and_loads_with_auto_classes(pretrained_dir, tmp_path, tokenizer):
    task = get_task("sst2")
    model = load_classifier(str(pretrained_dir), task, pooling="mean")
    assert isinstance(model, BertForSequenceClassificationMeanPool) and model.config.model_type == "lrc_bert_mean"
    model.save_pretrained(tmp_path / "mean")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "mean")  # `import lrc` registered it
    ids = tokenizer(["a fine film", "dull"], padding=True, return_tensors="pt")
    model.eval(), again.eval()
    assert torch.allclose(model(**ids).logits, again(**ids).logits)
    # padding does not change a row's answer: the mean is over real tokens only
    alone = model(**tokenizer(["dull"], return_tensors="pt")).logits
    assert torch.allclose(alone[0], model(**ids).logits[1], atol=1e-5)


def test_the_student_takes_the_teachers_pooling(pretrained_dir, tokenizer):
    task = get_task("sst2")
    teacher = load_classifier(str(pretrained_dir), task, pooling="mean")
    shape = StudentConfig(layers=2, hidden=32, heads=2, ffn=64, init="random")
    student, _ = build_student(shape, teacher, task, [2, 4])
    assert isinstance(student, BertForSequenceClassificationMeanPool)
    cls_student, _ = build_student(shape, teacher, task, [2, 4], pooling="cls")
    assert not isinstance(cls_student, BertForSequenceClassificationMeanPool)


# ---- the student's initialisation ---------------------------------------------------------------------------------

def test_auto_init_copies_the_pretrained_layers_not_the_finetuned_ones(pretrained_dir, tokenizer):
    task = get_task("sst2")
    teacher = load_classifier(str(pretrained_dir), task)
    with torch.no_grad():  # "fine-tuning": every teacher weight moves away from the pre-trained one
        for p in teacher.parameters():
            p.add_(0.5)
    pretrained = BertModel.from_pretrained(pretrained_dir)
    shape = StudentConfig(layers=2, hidden=32, heads=2, ffn=64, init="auto")
    layer_map = uniform_layer_map(2, 4)
    student, how = build_student(shape, teacher, task, layer_map, backbone=str(pretrained_dir))
    assert how.startswith("pre-trained layers 2,4 of")
    for m, n in enumerate(layer_map):
        got = student.bert.encoder.layer[m].state_dict()
        assert all(torch.equal(got[k], v) for k, v in pretrained.encoder.layer[n - 1].state_dict().items())
        tuned = teacher.bert.encoder.layer[n - 1].state_dict()
        assert not any(torch.equal(got[k], v) for k, v in tuned.items())
    assert torch.equal(student.bert.embeddings.word_embeddings.weight, pretrained.embeddings.word_embeddings.weight)
    copied, how = build_student(StudentConfig(layers=2, hidden=32, heads=2, ffn=64, init="finetuned_teacher"),
                                teacher, task, layer_map, backbone=str(pretrained_dir))
    assert how.startswith("the fine-tuned teacher's") and torch.equal(
        copied.bert.encoder.layer[0].attention.self.query.weight,
        teacher.bert.encoder.layer[1].attention.self.query.weight)


def test_auto_init_is_random_when_the_backbone_is_unknown(tokenizer):
    teacher = make_tiny_teacher(tokenizer.vocab_size)
    _student, how = build_student(StudentConfig(layers=2, hidden=32, heads=2, ffn=64, init="auto"), teacher,
                                  get_task("sst2"), [2, 4], backbone=None)
    assert how.startswith("random")
    with pytest.raises(Exception, match="pre-trained backbone"):
        build_student(StudentConfig(layers=2, hidden=32, heads=2, ffn=64, init="pretrained"), teacher,
                      get_task("sst2"), [2, 4], backbone=None)


def test_a_distillation_from_a_default_teacher_starts_from_the_pretrained_backbone(shared_glue_dir, pretrained_dir,
                                                                                    tmp_path):
    cfg = tiny_config(data_dir=str(shared_glue_dir), teacher=str(pretrained_dir), max_steps=1, max_train_examples=8,
                      max_eval_examples=4, teacher_epochs=1.0, student=StudentConfig(layers=2, hidden=32, heads=2,
                                                                                     ffn=64, init="auto"))
    store = RunStore(tmp_path / "runs")
    run = store.create(cfg, run_id="from-backbone")
    list(run_distill(cfg, run, store=store))
    assert run.summary["init"].count("pre-trained layers 2,4 of") == 1 and str(pretrained_dir) in run.summary["init"]


# ---- one draw of negatives per step -------------------------------------------------------------------------------

@pytest.mark.parametrize("cache", [False, True])
def test_the_clean_and_the_perturbed_pass_share_their_negatives(shared_glue_dir, tokenizer, monkeypatch, cache,
                                                                tmp_path):
    from test_train import make_distiller

    monkeypatch.setenv("LRC_CACHE_DIR", str(tmp_path / "cache"))
    seen = []
    real = lrc.train.cos_nce

    def spy(s, t, negatives=None, *a, **k):
        seen.append(None if negatives is None else negatives.detach().clone())
        return real(s, t, negatives, *a, **k)

    monkeypatch.setattr(lrc.train, "cos_nce", spy)
    d = make_distiller(shared_glue_dir, tokenizer, max_steps=5, negatives="bank", num_negatives=3, perturb=True,
                       epsilon=0.1, teacher_cache=cache, student=None)
    events = list(d.run())
    assert events[-1]["status"] == "completed"
    layers = len(d.layer_map)
    per_step = [seen[i:i + 2 * layers] for i in range(0, len(seen), 2 * layers)]  # clean pass, then perturbed pass
    with_bank = [step for step in per_step if step[0] is not None]
    assert with_bank
    for step in with_bank:
        clean, perturbed = step[:layers], step[layers:]
        assert all(torch.equal(a, b) for a, b in zip(clean, perturbed))


# ---- the constant-answer check -----------------------------------------------------------------------------------

def test_constant_scores_are_the_best_one_line_rule():
    labels = np.array([1, 1, 1, 0])
    assert constant_score(get_task("sst2"), labels) == 0.75  # majority class accuracy
    assert constant_score(get_task("mrpc"), labels) == pytest.approx(2 * 0.75 / 1.75)  # F1 of "always 1"
    assert constant_score(get_task("cola"), labels) == 0.0 and constant_score(get_task("stsb"), labels) == 0.0
    assert beats_constant(0.80, 0.75) and not beats_constant(0.755, 0.75) and beats_constant(None, 0.5) is None


def test_every_summary_says_whether_the_student_beat_a_constant(shared_glue_dir, tiny_teacher_dir, tmp_path):
    cfg = tiny_config(data_dir=str(shared_glue_dir), teacher=str(tiny_teacher_dir), max_train_examples=8,
                      max_eval_examples=8)
    store = RunStore(tmp_path / "runs")
    run = store.create(cfg, run_id="constant")
    list(run_distill(cfg, run, store=store))
    s = run.summary
    dev = load_task_data("sst2", shared_glue_dir, max_eval_examples=8).main_dev["label"]
    assert s["constant_score"] == constant_score(get_task("sst2"), np.array(dev))
    assert s["beats_constant"] == beats_constant(s["score"], s["constant_score"])


# ---- perturbation norms --------------------------------------------------------------------------------------------

def test_the_three_perturbation_norms():
    torch.manual_seed(0)
    e, g = torch.randn(2, 5, 8), torch.randn(2, 5, 8)
    mask = torch.ones(2, 5)
    mask[1, 3:] = 0
    token = perturb_embeddings(e, g, 0.5, "token", mask) - e
    assert torch.allclose(token.norm(dim=-1)[0], torch.full((5,), 0.5))
    assert torch.allclose(token.norm(dim=-1)[1], torch.tensor([0.5, 0.5, 0.5, 0.0, 0.0]))
    seq = perturb_embeddings(e, g, 0.5, "sequence", mask) - e
    assert torch.allclose(seq.flatten(1).norm(dim=1), torch.tensor([0.5, 0.5]))
    assert torch.equal(seq[1, 3:], torch.zeros(2, 8))
    rel = perturb_embeddings(e, g, 0.1, "relative", mask) - e
    assert torch.allclose(rel.norm(dim=-1)[0], 0.1 * e[0].norm(dim=-1))
    with pytest.raises(ValueError, match="unknown perturbation norm"):
        perturb_embeddings(e, g, 0.1, "fgm")
