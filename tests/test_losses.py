"""LRC-BERT losses checked against a direct, loop-by-loop reading of the formulas in LRC_METHOD.md."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lrc.losses import (
    angular_distance,
    cos_nce,
    cos_nce_with_pool,
    hard_label_loss,
    mse_representation_loss,
    soft_label_loss,
)


def g(x: torch.Tensor, y: torch.Tensor) -> float:
    """Angular distance of two vectors, written out: 1 - x.y / (|x| |y|)."""
    x, y = x.double(), y.double()
    return 1.0 - float((x @ y) / (x.norm() * y.norm()))


def one_sample(zt, zs, negs) -> float:
    """L = g(zT, zS) + 1/(2K) sum_i [2 - (g(n_i, zS) - g(zT, zS))] for one sample, one position."""
    k = len(negs)
    pos = g(zt, zs)
    return pos + sum(2.0 - (g(n, zs) - pos) for n in negs) / (2 * k)


def loop_vectors(s, t, n) -> float:
    """[B, D] with explicit negatives [B, K, D]: mean over the batch."""
    return sum(one_sample(t[b], s[b], list(n[b])) for b in range(s.shape[0])) / s.shape[0]


def loop_tokens(s, t, n, mask) -> float:
    """[B, L, D] with negatives [B, K, L, D]: the per-token loss averaged over real tokens, then over the batch."""
    total = 0.0
    for b in range(s.shape[0]):
        positions = [l for l in range(s.shape[1]) if mask[b, l]]
        per_token = [one_sample(t[b, l], s[b, l], [n[b, k, l] for k in range(n.shape[1])]) for l in positions]
        total += sum(per_token) / len(per_token)
    return total / s.shape[0]


def batch_negatives(t: torch.Tensor) -> torch.Tensor:
    """For each sample, the teacher vectors of every other sample of the batch: [B, B-1, ...]."""
    b = t.shape[0]
    return torch.stack([torch.cat([t[:i], t[i + 1:]]) for i in range(b)])


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


# ---- cos_nce against the formula ---------------------------------------------------------------------------

def test_cos_nce_vectors_matches_formula(gen):
    s, t = torch.randn(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    n = torch.randn(5, 3, 7, generator=gen)
    assert cos_nce(s, t, n).item() == pytest.approx(loop_vectors(s, t, n), abs=1e-5)


def test_cos_nce_tokens_matches_formula_with_mask(gen):
    s, t = torch.randn(3, 6, 8, generator=gen), torch.randn(3, 6, 8, generator=gen)
    n = torch.randn(3, 4, 6, 8, generator=gen)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]])
    assert cos_nce(s, t, n, mask).item() == pytest.approx(loop_tokens(s, t, n, mask), abs=1e-5)


def test_cos_nce_tokens_without_mask_uses_every_position(gen):
    s, t = torch.randn(2, 4, 8, generator=gen), torch.randn(2, 4, 8, generator=gen)
    n = torch.randn(2, 3, 4, 8, generator=gen)
    ones = torch.ones(2, 4, dtype=torch.long)
    assert cos_nce(s, t, n).item() == pytest.approx(loop_tokens(s, t, n, ones), abs=1e-5)


def test_cos_nce_closed_form_value_on_hand_picked_vectors():
    # z_S = z_T (cos 1), the one negative orthogonal (cos 0): 2 - 1.5 * 1 + 0.5 * 0 = 0.5
    s = torch.tensor([[1.0, 0.0]])
    n = torch.tensor([[[0.0, 3.0]]])
    assert cos_nce(s, s.clone(), n).item() == pytest.approx(0.5, abs=1e-6)
    # negative equal to the student: 2 - 1.5 + 0.5 = 1.0; opposite student, orthogonal negative: 2 + 1.5 + 0 = 3.5
    assert cos_nce(s, s.clone(), s[:, None].clone()).item() == pytest.approx(1.0, abs=1e-6)
    assert cos_nce(-s, s.clone(), n).item() == pytest.approx(3.5, abs=1e-6)


def test_cos_nce_small_when_student_equals_teacher_and_larger_when_rotated(gen):
    t = torch.randn(8, 16, generator=gen)
    q, _ = torch.linalg.qr(torch.randn(16, 16, generator=gen))
    same = cos_nce(t.clone(), t)
    rotated = cos_nce(t @ q, t)
    # with the student on the teacher the loss is 0.5 + 0.5 * mean cos to the negatives
    sims = F.normalize(t, dim=-1) @ F.normalize(t, dim=-1).T
    expected = 0.5 + 0.5 * ((sims.sum(-1) - sims.diag()) / 7).mean()
    assert same.item() == pytest.approx(expected.item(), abs=1e-5)
    assert rotated.item() > same.item() + 0.5


def test_cos_nce_invariant_to_positive_scaling(gen):
    s, t = torch.randn(4, 6, 8, generator=gen), torch.randn(4, 6, 8, generator=gen)
    n = torch.randn(4, 3, 6, 8, generator=gen)
    mask = torch.ones(4, 6, dtype=torch.long)
    mask[1, 4:] = 0
    base = cos_nce(s, t, n, mask)
    # a different positive factor for every vector
    scaled = cos_nce(s * (torch.rand(4, 6, 1, generator=gen) * 10 + 0.1),
                     t * (torch.rand(4, 6, 1, generator=gen) * 10 + 0.1),
                     n * (torch.rand(4, 3, 6, 1, generator=gen) * 10 + 0.1), mask)
    assert scaled.item() == pytest.approx(base.item(), abs=1e-5)
    assert cos_nce(s * 1000, t * 0.001).item() == pytest.approx(cos_nce(s, t).item(), abs=1e-5)
    # while MSE, the ablation, does depend on length
    assert mse_representation_loss(s * 3, t, mask).item() != pytest.approx(mse_representation_loss(s, t, mask).item())


def test_in_batch_negatives_equal_explicit_batch_negatives_vectors(gen):
    s, t = torch.randn(6, 10, generator=gen), torch.randn(6, 10, generator=gen)
    explicit = cos_nce(s, t, batch_negatives(t))
    assert cos_nce(s, t, None).item() == pytest.approx(explicit.item(), abs=1e-5)
    assert cos_nce(s, t, None).item() == pytest.approx(loop_vectors(s, t, batch_negatives(t)), abs=1e-5)


def test_in_batch_negatives_equal_explicit_batch_negatives_tokens_no_padding(gen):
    s, t = torch.randn(4, 5, 8, generator=gen), torch.randn(4, 5, 8, generator=gen)
    mask = torch.ones(4, 5, dtype=torch.long)
    explicit = cos_nce(s, t, batch_negatives(t), mask)
    assert cos_nce(s, t, None, mask).item() == pytest.approx(explicit.item(), abs=1e-5)
    assert cos_nce(s, t, None, mask).item() == pytest.approx(loop_tokens(s, t, batch_negatives(t), mask), abs=1e-5)


def test_in_batch_negatives_need_two_samples(gen):
    with pytest.raises(ValueError):
        cos_nce(torch.randn(1, 4, generator=gen), torch.randn(1, 4, generator=gen))
    with pytest.raises(ValueError):
        cos_nce(torch.randn(2, 4), torch.randn(2, 5))


@pytest.mark.parametrize("in_batch", [True, False])
def test_padding_does_not_change_token_loss(gen, in_batch):
    b, l, d, extra = 3, 5, 8, 4
    s, t = torch.randn(b, l, d, generator=gen), torch.randn(b, l, d, generator=gen)
    mask = torch.ones(b, l, dtype=torch.long)
    mask[2, 3:] = 0  # sample 2 already has 2 padded positions
    n = None if in_batch else torch.randn(b, 2, l, d, generator=gen)
    base = cos_nce(s, t, n, mask)

    def pad(x, dim):
        shape = list(x.shape)
        shape[dim] = extra
        return torch.cat([x, torch.randn(*shape, generator=gen) * 50], dim=dim)

    s2, t2 = pad(s, 1), pad(t, 1)
    # garbage (not zeros) also in the already-padded positions of sample 2
    s2[2, 3:5] = torch.randn(2, d, generator=gen) * 7
    t2[2, 3:5] = torch.randn(2, d, generator=gen) * 7
    mask2 = torch.cat([mask, torch.zeros(b, extra, dtype=torch.long)], dim=1)
    n2 = None if in_batch else pad(n, 2)
    assert cos_nce(s2, t2, n2, mask2).item() == pytest.approx(base.item(), abs=1e-5)
    # and without the mask the garbage does count, so the mask is what makes the difference
    assert cos_nce(s2, t2, n2, None).item() != pytest.approx(base.item(), abs=1e-3)


def test_negatives_mask_drops_negatives(gen):
    s, t = torch.randn(3, 6, generator=gen), torch.randn(3, 6, generator=gen)
    n = torch.randn(3, 4, 6, generator=gen)
    keep = torch.tensor([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]])
    only_kept = [n[b][keep[b].bool()] for b in range(3)]
    expected = sum(one_sample(t[b], s[b], list(only_kept[b])) for b in range(3)) / 3
    assert cos_nce(s, t, n, negatives_mask=keep).item() == pytest.approx(expected, abs=1e-5)


def test_cos_nce_gradients_flow_to_student_only_direction(gen):
    s = torch.randn(4, 6, generator=gen, requires_grad=True)
    t = torch.randn(4, 6, generator=gen)
    cos_nce(s, t).backward()
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    # the gradient of a scale-invariant loss is orthogonal to the vector itself
    assert (s.grad * s.detach()).sum(-1).abs().max().item() < 1e-5


@pytest.mark.parametrize("tokens", [False, True])
def test_cos_nce_with_pool_equals_in_batch_when_pool_is_batch(gen, tokens):
    shape = (5, 4, 8) if tokens else (5, 8)
    s, t = torch.randn(*shape, generator=gen), torch.randn(*shape, generator=gen)
    mask = torch.ones(5, 4, dtype=torch.long) if tokens else None
    if tokens:
        mask[1, 2:] = 0
    own = torch.arange(5)
    pooled = cos_nce_with_pool(s, t, t, own, mask, mask)
    assert pooled.item() == pytest.approx(cos_nce(s, t, None, mask).item(), abs=1e-5)


def test_cos_nce_with_pool_excludes_only_own_index(gen):
    # local batch of 2 sitting at positions 3 and 4 of a pool of 5: each sees the 4 others as negatives
    pool = torch.randn(5, 6, generator=gen)
    s = torch.randn(2, 6, generator=gen)
    t = pool[3:5]
    got = cos_nce_with_pool(s, t, pool, torch.tensor([3, 4]))
    expected = (one_sample(t[0], s[0], [pool[i] for i in (0, 1, 2, 4)])
                + one_sample(t[1], s[1], [pool[i] for i in (0, 1, 2, 3)])) / 2
    assert got.item() == pytest.approx(expected, abs=1e-5)


# ---- prediction-layer losses -------------------------------------------------------------------------------

def test_soft_label_loss_is_kl_times_t_squared(gen):
    s, t = torch.randn(4, 3, generator=gen), torch.randn(4, 3, generator=gen)
    temp = 1.1
    expected = 0.0
    for b in range(4):
        p_t = torch.softmax(t[b].double() / temp, -1)
        p_s = torch.softmax(s[b].double() / temp, -1)
        expected += float((p_t * (p_t.log() - p_s.log())).sum())
    expected = expected / 4 * temp**2
    assert soft_label_loss(s, t, temp).item() == pytest.approx(expected, rel=1e-5)
    assert soft_label_loss(s, t, 2.0).item() != pytest.approx(expected, rel=1e-3)


def test_soft_label_loss_zero_for_equal_logits_and_positive_otherwise(gen):
    t = torch.randn(6, 2, generator=gen)
    assert soft_label_loss(t.clone(), t).item() == pytest.approx(0.0, abs=1e-6)
    # shifting all logits of a row by a constant does not change the distribution
    assert soft_label_loss(t + 5.0, t).item() == pytest.approx(0.0, abs=1e-5)
    assert soft_label_loss(-t, t).item() > 0.01


def test_soft_label_loss_regression_is_mse_to_teacher_score():
    s, t = torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [4.0]])
    assert soft_label_loss(s, t).item() == pytest.approx((1.0 + 4.0) / 2)


def test_hard_label_loss_cross_entropy(gen):
    logits = torch.randn(5, 3, generator=gen)
    labels = torch.tensor([0, 2, 1, 1, 0])
    expected = -sum(float(torch.log_softmax(logits[i].double(), -1)[labels[i]]) for i in range(5)) / 5
    assert hard_label_loss(logits, labels).item() == pytest.approx(expected, rel=1e-5)


def test_hard_label_loss_mse_for_one_output():
    logits = torch.tensor([[1.0], [3.0], [0.5]])
    scores = torch.tensor([2.0, 3.0, 1.5])
    assert hard_label_loss(logits, scores).item() == pytest.approx((1.0 + 0.0 + 1.0) / 3)


# ---- angular distance --------------------------------------------------------------------------------------

def test_angular_distance_values():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    y = torch.tensor([[5.0, 0.0], [0.0, 2.0], [-3.0, 0.0], [1.0, 0.0]])
    got = angular_distance(x, y)
    assert got.tolist() == pytest.approx([0.0, 1.0, 2.0, 1 - 1 / math.sqrt(2)], abs=1e-6)


def test_angular_distance_range(gen):
    x, y = torch.randn(200, 5, generator=gen), torch.randn(200, 5, generator=gen)
    d = angular_distance(x, y)
    assert d.min().item() >= -1e-6 and d.max().item() <= 2 + 1e-6
    assert angular_distance(x, -x).min().item() == pytest.approx(2.0, abs=1e-5)
    assert angular_distance(x, 3 * x).abs().max().item() < 1e-5
