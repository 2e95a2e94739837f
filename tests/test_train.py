"""The two-stage Distiller and the pipeline around it, on tiny random models and tiny GLUE-layout files."""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoModelForSequenceClassification

import lrc.train
from lrc.config import load_preset
from lrc.data import load_task_data
from lrc.models import Projections, build_student, resolve_model_path, uniform_layer_map
from lrc.pipeline import run_distill
from lrc.runs import RunStore
from lrc.schedule import two_stage_schedule as _two_stage_schedule
from lrc.train import Distiller

from conftest import make_tiny_student, make_tiny_teacher, tiny_config

STEP_KEYS = {"type", "stage", "step", "total_steps", "loss", "lr", "samples_per_s", "elapsed", "epoch"}


def make_distiller(glue, tokenizer, task="sst2", teacher=None, student=None, n_train=16, **cfg_changes):
    kwargs = {k: cfg_changes.pop(k) for k in ("should_stop", "on_save") if k in cfg_changes}
    cfg = tiny_config(task=task, **cfg_changes)
    data = load_task_data(task, glue, max_train_examples=n_train, max_eval_examples=6)
    teacher = teacher or make_tiny_teacher(tokenizer.vocab_size, num_labels=data.task.num_labels)
    layer_map = uniform_layer_map(cfg.student.layers, teacher.config.num_hidden_layers)
    if student is None:
        student, _ = build_student(cfg.student, teacher, data.task, layer_map)
    return Distiller(cfg, data, tokenizer, student, teacher, layer_map, **kwargs)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def changed(before, after, prefix: str) -> list[str]:
    return [k for k in before if k.startswith(prefix) and not torch.equal(before[k], after[k])]


def of_type(events, kind):
    return [e for e in events if e["type"] == kind]


# ---- what each stage trains ------------------------------------------------------------------------------------

def test_stage1_trains_encoder_but_not_head(shared_glue_dir, tokenizer):
    d = make_distiller(shared_glue_dir, tokenizer, max_steps=3, stage1_fraction=1.0)
    before = snapshot(d.student)
    events = list(d.run())
    after = snapshot(d.student)
    assert {e["stage"] for e in of_type(events, "step")} == {1}
    assert all("soft" not in e and "hard" not in e and "cos_nce" in e for e in of_type(events, "step"))
    assert changed(before, after, "classifier") == []
    assert changed(before, after, "bert.pooler") == []
    assert changed(before, after, "bert.encoder"), "stage 1 must train the encoder"
    assert changed(before, after, "bert.embeddings"), "the embeddings get gradients through the perturbed pass"


def test_stage2_trains_the_head(shared_glue_dir, tokenizer):
    d = make_distiller(shared_glue_dir, tokenizer, max_steps=3, two_stage=False)
    before = snapshot(d.student)
    list(d.run())
    assert changed(before, snapshot(d.student), "classifier")


def test_projections_are_trained(shared_glue_dir, tokenizer):
    d = make_distiller(shared_glue_dir, tokenizer, max_steps=3)
    assert isinstance(d.projections, Projections) and len(d.projections.maps) == 2  # per layer (default)
    before = snapshot(d.projections)
    list(d.run())
    assert set(changed(before, snapshot(d.projections), "maps")) == set(before), "W must be in the optimizer"
    in_optimizer = {id(p) for group in d.optimizer.param_groups for p in group["params"]}
    assert all(id(p) in in_optimizer for p in d.projections.parameters())


def test_shared_projection_is_one_map(shared_glue_dir, tokenizer):
    d = make_distiller(shared_glue_dir, tokenizer, max_steps=2, projection="shared")
    assert len(d.projections.maps) == 1
    assert of_type(list(d.run()), "end")[0]["status"] == "completed"


def test_represent_modes():
    from lrc.train import represent

    hidden = torch.arange(2 * 3 * 2, dtype=torch.float32).reshape(2, 3, 2)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    assert torch.equal(represent(hidden, mask, "tokens"), hidden)
    assert torch.equal(represent(hidden, mask, "cls"), hidden[:, 0])
    mean = represent(hidden, mask, "mean")
    assert torch.allclose(mean[0], hidden[0, :2].mean(0)) and torch.allclose(mean[1], hidden[1].mean(0))


# ---- the event stream ------------------------------------------------------------------------------------------

def test_event_stream_has_documented_events_and_keys(shared_glue_dir, tokenizer):
    d = make_distiller(shared_glue_dir, tokenizer, max_steps=5, stage1_fraction=0.6)
    events = list(d.run())
    types = [e["type"] for e in events]
    assert types[0] == "start" and types[-1] == "end"
    start = events[0]
    assert {"total_steps", "stage1_steps", "device", "precision", "num_processes"} <= set(start)
    assert start["total_steps"] == 5 and start["stage1_steps"] == 3 and start["layer_map"] == [2, 4]
    steps = of_type(events, "step")
    assert [e["step"] for e in steps] == [1, 2, 3, 4, 5]
    for e in steps:
        assert STEP_KEYS <= set(e), set(e)
        assert all(math.isfinite(e[k]) for k in ("loss", "lr", "samples_per_s", "elapsed"))
    assert [e["stage"] for e in steps] == [1, 1, 1, 2, 2]
    for e in steps[:3]:
        assert "cos_nce" in e and "soft" not in e and "hard" not in e
        assert e["loss"] == pytest.approx(e["cos_nce"])
    for e in steps[3:]:
        assert {"cos_nce", "soft", "hard"} <= set(e)
        # stage 2: alpha * cos_nce + beta * soft + gamma * hard with the defaults 1 / 1 / 3
        assert e["loss"] == pytest.approx(e["cos_nce"] + e["soft"] + 3 * e["hard"], rel=1e-5)
    (stage,) = of_type(events, "stage")
    assert stage["stage"] == 2 and stage["step"] == 3
    assert types.index("stage") > types.index("step") + 2  # after the three stage-1 steps
    evals = of_type(events, "eval")
    assert [(e["stage"], e["step"], e["split"]) for e in evals] == [(1, 3, "dev"), (2, 5, "dev")]
    assert set(evals[0]["metrics"]) == {"accuracy"} and 0.0 <= evals[0]["metrics"]["accuracy"] <= 1.0
    end = events[-1]
    assert end["status"] == "completed" and end["step"] == 5 and "message" in end
    json.dumps(events)  # every event is JSON-safe


def test_two_stage_schedule_restarts_at_the_boundary():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = _two_stage_schedule(opt, stage1_steps=4, total_steps=8, warmup_ratio=0.0)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1.0, 0.75, 0.5, 0.25, 1.0, 0.75, 0.5, 0.25])


def test_eval_every_and_save_every(shared_glue_dir, tokenizer):
    saved = []
    d = make_distiller(shared_glue_dir, tokenizer, max_steps=4, two_stage=False, eval_every=2, save_every=2,
                       on_save=lambda model, proj, tag: saved.append(tag))
    events = list(d.run())
    assert [e["step"] for e in of_type(events, "eval")] == [2, 4]
    assert [e["step"] for e in of_type(events, "checkpoint")] == [2]
    assert saved == ["step-2", "final"]


# ---- stopping, saving, reloading -------------------------------------------------------------------------------

def test_stop_request_ends_stopped_with_loadable_student(shared_glue_dir, tokenizer, tiny_teacher_dir, tmp_path):
    cfg = tiny_config(data_dir=str(shared_glue_dir), teacher=str(tiny_teacher_dir), max_steps=20,
                      max_train_examples=16, max_eval_examples=4)
    store = RunStore(tmp_path / "runs")
    run = store.create(cfg.to_dict(), run_id="stop-me")
    stop = {"now": False}
    events = []
    for ev in run_distill(cfg, run, lambda: stop["now"], store=store):
        events.append(ev)
        if ev["type"] == "step" and ev["step"] >= 2:
            stop["now"] = True
    end = events[-1]
    assert end["type"] == "end" and end["status"] == "stopped" and end["step"] == 2
    assert not of_type(events, "teacher_ready"), "a fine-tuned teacher folder must be used as is"
    assert run.status == "stopped"
    assert run.summary["status"] == "stopped" and run.summary["steps"] == 2
    assert [e["type"] for e in run.read_events()] == [e["type"] for e in events]
    path = resolve_model_path(run.path)
    assert path.endswith("student")
    model = AutoModelForSequenceClassification.from_pretrained(path)
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 16
    assert (run.path / "projections.safetensors").is_file()


def test_saved_student_reloads_with_same_logits(shared_glue_dir, tokenizer, tmp_path):
    target = tmp_path / "saved"

    def on_save(model, projections, tag):
        model.save_pretrained(target)

    d = make_distiller(shared_glue_dir, tokenizer, max_steps=3, on_save=on_save)
    list(d.run())
    inputs = tokenizer(["good movie", "a long dull plot with awful music"], padding=True, return_tensors="pt")
    d.student.eval()
    with torch.no_grad():
        expected = d.student(**inputs).logits
        got = AutoModelForSequenceClassification.from_pretrained(target).eval()(**inputs).logits
    assert torch.allclose(expected, got, atol=1e-5)
    assert not torch.allclose(got[0], got[1])  # a real, input-dependent model


# ---- ablation flags --------------------------------------------------------------------------------------------

def test_kd_baseline_preset_flags(shared_glue_dir, tokenizer, monkeypatch):
    preset = load_preset("kd-baseline")
    flags = {k: preset[k] for k in ("use_cos_nce", "perturb", "two_stage", "alpha", "beta", "gamma")}
    calls = []
    monkeypatch.setattr(lrc.train, "perturb_embeddings", lambda *a: calls.append(1))
    d = make_distiller(shared_glue_dir, tokenizer, max_steps=3, **flags)
    assert d.projections is None
    events = list(d.run())
    assert calls == []
    assert not of_type(events, "stage")
    assert events[0]["stage1_steps"] == 0
    for e in of_type(events, "step"):
        assert e["stage"] == 2 and "cos_nce" not in e and {"soft", "hard"} <= set(e)
        assert e["loss"] == pytest.approx(flags["beta"] * e["soft"] + flags["gamma"] * e["hard"], rel=1e-5)
    assert events[-1]["status"] == "completed"


def test_one_stage_keeps_cos_nce_from_the_start(shared_glue_dir, tokenizer):
    events = list(make_distiller(shared_glue_dir, tokenizer, max_steps=2, two_stage=False).run())
    assert not of_type(events, "stage")
    assert all(e["stage"] == 2 and {"cos_nce", "soft", "hard"} <= set(e) for e in of_type(events, "step"))


@pytest.mark.parametrize("representation", ["cls", "mean"])
def test_other_representations_run(shared_glue_dir, tokenizer, representation, monkeypatch):
    shapes = []
    real = lrc.train.cos_nce
    monkeypatch.setattr(lrc.train, "cos_nce", lambda s, t, *a: shapes.append(s.dim()) or real(s, t, *a))
    events = list(make_distiller(shared_glue_dir, tokenizer, max_steps=2, representation=representation).run())
    assert events[-1]["status"] == "completed"
    assert shapes and set(shapes) == {2}  # one vector per sample, not per token


def test_mse_distance_ablation(shared_glue_dir, tokenizer, monkeypatch):
    used = {"cos": 0, "mse": 0}
    real_mse = lrc.train.mse_representation_loss
    monkeypatch.setattr(lrc.train, "cos_nce", lambda *a, **k: used.__setitem__("cos", used["cos"] + 1))

    def mse(*a, **k):
        used["mse"] += 1
        return real_mse(*a, **k)

    monkeypatch.setattr(lrc.train, "mse_representation_loss", mse)
    events = list(make_distiller(shared_glue_dir, tokenizer, max_steps=2, distance="mse").run())
    assert events[-1]["status"] == "completed"
    assert used["cos"] == 0 and used["mse"] > 0


def test_regression_task_runs(shared_glue_dir, tokenizer):
    teacher = make_tiny_teacher(tokenizer.vocab_size, num_labels=1)
    d = make_distiller(shared_glue_dir, tokenizer, task="stsb", teacher=teacher, max_steps=3)
    assert d.student.config.num_labels == 1
    events = list(d.run())
    assert events[-1]["status"] == "completed"
    last = of_type(events, "step")[-1]
    assert {"soft", "hard"} <= set(last) and math.isfinite(last["loss"])
    metrics = of_type(events, "eval")[-1]["metrics"]
    assert {"pearson", "spearman"} <= set(metrics)


@pytest.mark.parametrize("max_len, representation", [(16, "tokens"), (12, "tokens"), (16, "cls")])
def test_bank_negatives_are_used(shared_glue_dir, tokenizer, monkeypatch, max_len, representation):
    negatives_seen = []
    real = lrc.train.cos_nce

    def spy(s, t, negatives=None, *a, **k):
        negatives_seen.append(None if negatives is None else tuple(negatives.shape))
        return real(s, t, negatives, *a, **k)

    monkeypatch.setattr(lrc.train, "cos_nce", spy)
    d = make_distiller(shared_glue_dir, tokenizer, max_steps=6, negatives="bank", num_negatives=3,
                       max_seq_length=max_len, representation=representation)
    events = list(d.run())
    assert events[-1]["status"] == "completed", events[-1]
    with_bank = [s for s in negatives_seen if s is not None]
    assert with_bank, "after the first batch the bank holds enough vectors"
    assert all(s[1] == 3 for s in with_bank)  # K = num_negatives, whatever the batch size


def test_single_example_in_batch_negatives_is_a_clear_error(shared_glue_dir, tokenizer):
    from lrc.errors import LRCError

    d = make_distiller(shared_glue_dir, tokenizer, n_train=1, max_steps=1)
    with pytest.raises(LRCError, match="at least 2 training examples"):
        list(d.run())


# ---- divergence ------------------------------------------------------------------------------------------------

def _nan_after(monkeypatch, calls_before_nan: int):
    real = lrc.train.cos_nce
    count = {"n": 0}

    def poisoned(*a, **k):
        count["n"] += 1
        value = real(*a, **k)
        return value * float("nan") if count["n"] > calls_before_nan else value

    monkeypatch.setattr(lrc.train, "cos_nce", poisoned)


def test_nan_loss_ends_as_diverged(shared_glue_dir, tokenizer, monkeypatch):
    saved = []
    # 2 mapped layers x 2 passes (clean + perturbed) = 4 calls per step: NaN from step 3 on
    _nan_after(monkeypatch, 8)
    d = make_distiller(shared_glue_dir, tokenizer, max_steps=6, on_save=lambda *a: saved.append(a[-1]))
    events = list(d.run())
    end = events[-1]
    assert end["status"] == "diverged" and end["step"] == 3
    assert "lr" in end["message"] and "nan" in end["message"].lower()
    assert [e["step"] for e in of_type(events, "step")] == [1, 2]
    assert saved == []


def test_divergence_in_pipeline_marks_the_run_diverged(shared_glue_dir, tiny_teacher_dir, tmp_path, monkeypatch):
    _nan_after(monkeypatch, 4)
    cfg = tiny_config(data_dir=str(shared_glue_dir), teacher=str(tiny_teacher_dir), max_steps=5, lr=1.0,
                      max_grad_norm=0.0, max_train_examples=16, max_eval_examples=4)
    store = RunStore(tmp_path / "runs")
    run = store.create(cfg.to_dict(), run_id="boom")
    events = list(run_distill(cfg, run, store=store))
    assert events[-1]["status"] == "diverged"
    assert run.status == "diverged" and run.summary["status"] == "diverged"


# ---- the default-teacher path of the pipeline ------------------------------------------------------------------

@pytest.fixture
def raw_encoder_dir(tmp_path, tokenizer):
    """A tiny encoder with no task head: the pipeline must fine-tune it before distilling from it."""
    from transformers import BertConfig, BertModel

    from conftest import TEACHER_SHAPE

    path = tmp_path / "raw-encoder"
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=128, **TEACHER_SHAPE)
              ).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_raw_teacher_is_fine_tuned_cached_and_reused(shared_glue_dir, raw_encoder_dir, tmp_path):
    cfg = tiny_config(data_dir=str(shared_glue_dir), teacher=str(raw_encoder_dir), max_steps=2, teacher_epochs=1.0,
                      teacher_lr=1e-3, teacher_batch_size=4, max_train_examples=8, max_eval_examples=4)
    store = RunStore(tmp_path / "runs")
    first = store.create(cfg.to_dict(), run_id="first")
    events = list(run_distill(cfg, first, store=store))
    teacher_events = [e for e in events if e.get("phase") == "teacher"]
    assert [e["type"] for e in teacher_events][0] == "start" and teacher_events[-1]["status"] == "completed"
    # the student is capped at 8 rows; the default teacher takes all 32 of the task's rows (batch 4, one epoch)
    assert teacher_events[0]["train_examples"] == 32 and of_type(events, "start")[-1]["train_examples"] == 8
    assert len(of_type(teacher_events, "step")) == 8
    (ready,) = of_type(events, "teacher_ready")
    assert ready["cached"] is False
    assert events[-1]["type"] == "end" and events[-1]["status"] == "completed" and "phase" not in events[-1]
    assert first.summary["teacher"] == ready["path"]
    teacher_run = store.get(ready["path"].rsplit("/", 1)[-1])
    assert teacher_run.status == "completed" and (teacher_run.path / "model" / "config.json").exists()
    # a second distillation with the same settings reuses the cached teacher
    second = store.create(cfg.to_dict(), run_id="second")
    events = list(run_distill(cfg, second, store=store))
    assert of_type(events, "teacher_ready")[0]["cached"] is True
    assert not [e for e in events if e.get("phase") == "teacher" and e["type"] == "step"]


def test_stop_while_training_the_teacher(shared_glue_dir, raw_encoder_dir, tmp_path):
    cfg = tiny_config(data_dir=str(shared_glue_dir), teacher=str(raw_encoder_dir), max_steps=2, teacher_epochs=3.0,
                      max_train_examples=8, max_eval_examples=4)
    store = RunStore(tmp_path / "runs")
    run = store.create(cfg.to_dict(), run_id="stopped-early")
    stop = {"now": False}
    events = []
    for ev in run_distill(cfg, run, lambda: stop["now"], store=store):
        events.append(ev)
        if ev["type"] == "step":
            stop["now"] = True
    assert events[-1]["type"] == "end" and events[-1]["status"] == "stopped" and "phase" not in events[-1]
    assert "teacher" in events[-1]["message"]
    assert run.status == "stopped"
    assert run.read_events()[-1]["status"] == "stopped"


def test_failure_before_training_marks_the_run_failed(tmp_path):
    cfg = tiny_config(data_dir=str(tmp_path / "no-such-glue"))
    store = RunStore(tmp_path / "runs")
    run = store.create(cfg.to_dict(), run_id="bad-data")
    from lrc.errors import DataError

    with pytest.raises(DataError):
        list(run_distill(cfg, run, store=store))
    assert run.status == "failed" and "does not exist" in run.status_info["message"]
    assert run.read_events()[-1] == {"type": "end", "status": "failed", "message": run.status_info["message"]}


# ---- speed options ---------------------------------------------------------------------------------------------

def _losses_of(d) -> list[float]:
    return [e["loss"] for e in d.run() if e["type"] == "step"]


def test_compiled_student_trains_like_the_eager_one(shared_glue_dir, tokenizer):
    """torch.compile (eager backend: the graph is captured by dynamo, no C++ build) changes no number."""
    import torch._dynamo

    eager = _losses_of(make_distiller(shared_glue_dir, tokenizer, max_steps=3))
    torch._dynamo.reset()
    compiled_d = make_distiller(shared_glue_dir, tokenizer, max_steps=3, compile=True, compile_backend="eager")
    compiled = _losses_of(compiled_d)
    assert compiled == pytest.approx(eager, rel=1e-4)
    student = compiled_d.accelerator.unwrap_model(compiled_d.model).student
    for block in student.base_model.encoder.layer:  # the hook-free regions of both blocks were compiled
        assert block.intermediate._compiled_call_impl is not None and block.output._compiled_call_impl is not None
        assert "forward" in vars(block.attention.self)  # hooked by transformers: its forward alone is compiled
    counters = torch._dynamo.utils.counters
    assert counters["stats"]["unique_graphs"] >= 1
    assert not counters["graph_break"], dict(counters["graph_break"])  # the regions trace whole
    assert not any("_orig_mod" in k for k in student.state_dict())


def test_fp16_loss_scale_is_applied_to_the_perturbation_gradient(shared_glue_dir, tokenizer, monkeypatch):
    """Under fp16 the clean-pass loss is scaled before d loss / d e (else small gradients underflow); the
    perturbation uses only the direction, so the run's numbers are those of an unscaled run."""

    class Scaler:  # what accelerate's GradScaler exposes; on CPU accelerate makes none, so a stand-in
        def get_scale(self):
            return 65536.0

        def is_enabled(self):
            return True

        def scale(self, loss):
            return loss

        def unscale_(self, optimizer):
            pass

        def step(self, optimizer, closure=None):
            optimizer.step()

        def update(self):
            pass

    plain = _losses_of(make_distiller(shared_glue_dir, tokenizer, max_steps=3))
    seen: list[float] = []
    real_grad = torch.autograd.grad

    def spy(outputs, inputs, *args, **kwargs):
        seen.append(float(outputs.detach()))
        return real_grad(outputs, inputs, *args, **kwargs)

    monkeypatch.setattr(torch.autograd, "grad", spy)
    d = make_distiller(shared_glue_dir, tokenizer, max_steps=3)
    d.accelerator.scaler = Scaler()
    events = [e for e in d.run() if e["type"] == "step"]
    assert [e["loss"] for e in events] == pytest.approx(plain, rel=1e-5)
    assert len(seen) == 3 and all(v > 1000 for v in seen), "the clean loss must reach autograd scaled"


def test_perturbation_ignores_non_finite_gradient_entries():
    from lrc.perturb import perturb_embeddings

    e = torch.zeros(1, 2, 3)
    g = torch.tensor([[[float("inf"), 0.0, 0.0], [0.0, 3.0, 4.0]]])
    out = perturb_embeddings(e, g, 1.0)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0, 1], torch.tensor([0.0, 0.6, 0.8]))
