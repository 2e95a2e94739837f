"""Gradient perturbation: the pure step e' = e + eps g/||g||, and that the Distiller trains on the perturbed pass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import lrc.train
from lrc.data import load_task_data
from lrc.models import uniform_layer_map
from lrc.perturb import embedding_output, perturb_embeddings
from lrc.train import Distiller

from conftest import make_tiny_student, make_tiny_teacher, tiny_config


def test_perturbation_moves_each_token_by_epsilon_along_its_gradient():
    gen = torch.Generator().manual_seed(0)
    e = torch.randn(2, 5, 8, generator=gen)
    grad = torch.randn(2, 5, 8, generator=gen) * torch.rand(2, 5, 1, generator=gen) * 100  # different norms
    for eps in (1.0, 0.25):
        moved = perturb_embeddings(e, grad, eps) - e
        assert moved.norm(dim=-1) == pytest.approx(torch.full((2, 5), eps), abs=1e-5)
        cos = F.cosine_similarity(moved, grad, dim=-1)
        assert torch.allclose(cos, torch.ones_like(cos), atol=1e-5)


def test_perturbation_leaves_zero_gradient_tokens_unchanged():
    gen = torch.Generator().manual_seed(1)
    e = torch.randn(2, 4, 6, generator=gen)
    grad = torch.randn(2, 4, 6, generator=gen)
    grad[0, 3] = 0.0
    grad[1, 1:] = 0.0
    out = perturb_embeddings(e, grad, 1.0)
    assert torch.isfinite(out).all()
    assert torch.equal(out[0, 3], e[0, 3])
    assert torch.equal(out[1, 1:], e[1, 1:])
    assert not torch.allclose(out[0, 0], e[0, 0])


def test_perturbation_zero_epsilon_is_identity_and_does_not_track_grad():
    e = torch.randn(1, 3, 4, requires_grad=True)
    grad = torch.randn(1, 3, 4, requires_grad=True)
    out = perturb_embeddings(e, grad, 0.0)
    assert torch.equal(out.detach(), e.detach())
    out.sum().backward()
    assert grad.grad is None  # the direction is a constant: no gradient flows through it
    assert torch.equal(e.grad, torch.ones_like(e))


def test_embedding_output_hook_swaps_the_embedding_output(tokenizer):
    model = make_tiny_student(tokenizer.vocab_size)
    model.eval()
    inputs = tokenizer(["good movie", "a bad dull plot"], padding=True, return_tensors="pt")
    with torch.no_grad():
        clean = model(**inputs, output_hidden_states=True)
        with embedding_output(model.bert.embeddings, lambda e: e + 1.0):
            shifted = model(**inputs, output_hidden_states=True)
        after = model(**inputs, output_hidden_states=True)
    assert torch.allclose(shifted.hidden_states[0], clean.hidden_states[0] + 1.0, atol=1e-6)
    assert not torch.allclose(shifted.logits, clean.logits)
    assert torch.allclose(after.logits, clean.logits)  # the hook is gone after the block


# ---- the Distiller's step --------------------------------------------------------------------------------------

def _train_student(glue, tokenizer, steps: int, **cfg_changes) -> dict[str, torch.Tensor]:
    """Train a dropout-free tiny student from a fixed state; return its final weights."""
    cfg = tiny_config(max_steps=steps, **cfg_changes)
    data = load_task_data("sst2", glue, max_train_examples=16, max_eval_examples=4)
    teacher = make_tiny_teacher(tokenizer.vocab_size, dropout=0.0)
    student = make_tiny_student(tokenizer.vocab_size, dropout=0.0)
    d = Distiller(cfg, data, tokenizer, student, teacher, uniform_layer_map(2, 4))
    events = list(d.run())
    assert events[-1]["status"] == "completed"
    return {k: v.detach().clone() for k, v in student.state_dict().items()}


def _max_diff(a, b) -> float:
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_distiller_calls_perturbation_once_per_step(shared_glue_dir, tokenizer, monkeypatch):
    calls = []
    real = lrc.train.perturb_embeddings

    def spy(e, grad, eps, *rest):
        calls.append((tuple(e.shape), eps, float(grad.abs().sum())))
        return real(e, grad, eps, *rest)

    monkeypatch.setattr(lrc.train, "perturb_embeddings", spy)
    _train_student(shared_glue_dir, tokenizer, 3, epsilon=0.5)
    assert len(calls) == 3
    assert all(eps == 0.5 and grad_sum > 0 and len(shape) == 3 for shape, eps, grad_sum in calls)

    calls.clear()
    _train_student(shared_glue_dir, tokenizer, 2, perturb=False)
    assert calls == []


def test_updates_come_from_the_perturbed_pass(shared_glue_dir, tokenizer):
    off = _train_student(shared_glue_dir, tokenizer, 3, perturb=False)
    tiny = _train_student(shared_glue_dir, tokenizer, 3, perturb=True, epsilon=1e-6)
    big = _train_student(shared_glue_dir, tokenizer, 3, perturb=True, epsilon=1.0)
    again = _train_student(shared_glue_dir, tokenizer, 3, perturb=True, epsilon=1.0)
    assert _max_diff(big, again) < 1e-6  # deterministic from the same seed and state
    d_tiny, d_big = _max_diff(off, tiny), _max_diff(off, big)
    assert d_big > 1e-3, "a perturbation of 1.0 should change the update"
    assert d_tiny < d_big / 20, (d_tiny, d_big)


def test_teacher_runs_once_per_step_unperturbed_and_frozen(shared_glue_dir, tokenizer):
    cfg = tiny_config(max_steps=3, epsilon=1.0)
    data = load_task_data("sst2", shared_glue_dir, max_train_examples=16, max_eval_examples=4)
    teacher = make_tiny_teacher(tokenizer.vocab_size, dropout=0.0)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = make_tiny_student(tokenizer.vocab_size)
    seen = []  # (inputs, logits) of every teacher call during training
    teacher.register_forward_hook(
        lambda mod, args, kwargs, out: seen.append(({k: v.clone() for k, v in kwargs.items()
                                                     if isinstance(v, torch.Tensor)}, out.logits.clone())),
        with_kwargs=True)
    events = list(Distiller(cfg, data, tokenizer, student, teacher, uniform_layer_map(2, 4)).run())
    assert events[-1]["status"] == "completed"
    assert len(seen) == 3, "the teacher runs once per step: not re-run for the perturbed pass"
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items()), "the teacher is frozen"
    assert not teacher.training
    # the teacher saw the clean input: re-running it on the same tokens gives the same logits
    ref = make_tiny_teacher(tokenizer.vocab_size, dropout=0.0)
    with torch.no_grad():
        for inputs, logits in seen:
            assert torch.allclose(ref(**inputs).logits, logits, atol=1e-5)
