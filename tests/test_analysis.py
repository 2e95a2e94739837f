"""lrc.analysis on tiny models with known answers: angles, minibatch CKA, 2-D maps, snapshots, the run views."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from lrc.analysis import (
    DEFAULT_CACHE_MB,
    Map2D,
    Projector,
    RunAnalysis,
    _example_cosines,
    _u_center,
    cka_matrix,
    clear_run_analyses,
    collect_representations,
    get_run_analysis,
    hsic_unbiased,
    mapped_cosines,
    probe_alignment,
    read_snapshots,
    set_cache_budget,
    similarity_matrix,
)
from lrc.errors import LRCError
from lrc.losses import cos_nce
from lrc.models import Projections

from conftest import make_tiny_student, make_tiny_teacher, sentence, tiny_config


def _batches(tokenizer, n: int = 24, batch_size: int = 8, max_length: int = 16):
    texts = [sentence(i) for i in range(n)]
    out = []
    for start in range(0, n, batch_size):
        enc = tokenizer(texts[start:start + batch_size], truncation=True, max_length=max_length, padding=True,
                        return_tensors="pt")
        out.append(dict(enc))
    return out


_TINY_RUNS: dict[tuple, tuple] = {}


def make_tiny_run(root: Path, teacher_dir: Path, glue_dir: Path, run_id: str = "tiny", **changes):
    """A finished tiny distillation run (4-layer/32 teacher, 2-layer/16 student) with snapshots every 2 steps.

    Made once per test session for the same inputs (test_layers_tab.py imports this module and reuses it);
    the first caller's `root` holds it.
    """
    from lrc.pipeline import run_distill
    from lrc.runs import RunStore

    key = (str(teacher_dir), str(glue_dir), run_id, tuple(sorted(changes.items())))
    if key in _TINY_RUNS:
        return _TINY_RUNS[key]

    settings = dict(data_dir=str(glue_dir), teacher=str(teacher_dir), max_steps=4, max_train_examples=16,
                    max_eval_examples=8, snapshot_every=2, probe_examples=6)
    settings.update(changes)
    cfg = tiny_config(**settings)
    store = RunStore(root)
    run = store.create(cfg.to_dict(), run_id=run_id)
    events = list(run_distill(cfg, run, store=store))
    assert events[-1]["status"] == "completed", events[-1]
    _TINY_RUNS[key] = (store, run, events)
    return store, run, events


# ---- known answers on tiny models --------------------------------------------------------------------------------

@pytest.mark.parametrize("representation", ["cls", "mean", "tokens"])
def test_identical_student_gives_cosine_one_and_cka_one_on_the_diagonal(tokenizer, representation):
    model = make_tiny_teacher(tokenizer.vocab_size)
    reps = collect_representations(model, _batches(tokenizer), representation)
    assert len(reps.layers) == 5 and reps.num_examples == 24
    if representation == "tokens":
        assert reps.layers[0].shape[0] > reps.num_examples  # one row per real token
    sim = similarity_matrix(reps, reps, Projector(32, 32))
    assert sim["projection_source"] == ["identity"] * 5
    for k in range(5):
        assert sim["cos_own"][k][k] == pytest.approx(1.0, abs=1e-6)
        if not (representation == "cls" and k == 0):  # the embedding [CLS] vector is one constant
            assert sim["cos_own"][k][k] > sim["cos_neg"][k][k]
    cka = cka_matrix(reps, reps, batch_size=16)
    for k in range(5):
        if representation == "cls" and k == 0:
            # the [CLS] row of the embedding layer is the same vector for every example: CKA is undefined there
            assert math.isnan(cka["cka"][0][0])
        else:
            assert cka["cka"][k][k] == pytest.approx(1.0, abs=1e-6)
    json.dumps(sim), json.dumps(cka)


def test_batches_in_another_order_give_the_same_rows(tokenizer):
    model = make_tiny_teacher(tokenizer.vocab_size)
    texts = [sentence(i) for i in range(12)]
    perm = np.random.default_rng(0).permutation(12)

    def batches(order):
        return [dict(tokenizer([texts[i] for i in order[k:k + 5]], padding=True, return_tensors="pt"))
                for k in range(0, 12, 5)]

    from lrc.analysis import collect_all

    plain = collect_all(model, batches(list(range(12))))
    shuffled = collect_all(model, batches(perm), order=perm)
    for rep in ("cls", "mean", "tokens"):
        a, b = plain[rep], shuffled[rep]
        assert np.array_equal(a.row_example, b.row_example) and np.array_equal(a.row_position, b.row_position)
        assert np.allclose(a.logits, b.logits, atol=1e-5)
        for x, y in zip(a.layers, b.layers):
            assert np.allclose(x, y, atol=1e-5)


def test_rows_are_each_examples_real_tokens_in_order(tokenizer):
    """Known answer: the rows are the model's own hidden states, example by example, position by position."""
    from lrc.analysis import collect_all

    model = make_tiny_teacher(tokenizer.vocab_size).eval()
    texts = [sentence(i) * (1 + i % 3) for i in range(7)]  # different lengths, so there is padding
    batch = dict(tokenizer(texts, padding=True, return_tensors="pt"))
    reps = collect_all(model, [batch])
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    mask = batch["attention_mask"]
    assert int(mask.sum()) < mask.numel()
    expected = [(e, p) for e in range(7) for p in range(int(mask[e].sum()))]
    tok = reps["tokens"]
    assert list(zip(tok.row_example.tolist(), tok.row_position.tolist())) == expected
    for k, hidden in enumerate(out.hidden_states):
        want = torch.stack([hidden[e, p] for e, p in expected]).numpy()
        assert np.allclose(tok.layers[k], want, atol=1e-5)
        assert np.allclose(reps["cls"].layers[k], hidden[:, 0].numpy(), atol=1e-5)
        mean = (hidden * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
        assert np.allclose(reps["mean"].layers[k], mean.numpy(), atol=1e-5)
    assert np.allclose(tok.logits, out.logits.numpy(), atol=1e-5)
    with pytest.raises(LRCError, match="permutation of the 7 examples"):
        collect_all(model, [batch], order=[0] * 7)
    with pytest.raises(LRCError, match="no examples"):
        collect_all(model, [])


def test_random_student_gives_low_values(tokenizer):
    teacher = make_tiny_teacher(tokenizer.vocab_size, seed=0)
    other = make_tiny_teacher(tokenizer.vocab_size, seed=123)  # same shape, unrelated weights
    batches = _batches(tokenizer, n=32)
    t = collect_representations(teacher, batches, "mean")
    s = collect_representations(other, batches, "mean")
    sim = similarity_matrix(t, s, Projector(32, 32))
    same = similarity_matrix(t, t, Projector(32, 32))
    for k in range(1, 5):
        assert abs(sim["cos_own"][k][k]) < 0.5
        # no example-specific alignment: the own example is no closer than the others
        assert abs(sim["margin"][k][k]) < 0.05 < same["margin"][k][k]
    cka = cka_matrix(t, s, batch_size=32)
    diag = [cka["cka"][k][k] for k in range(1, 5)]
    assert max(diag) < 0.9


def test_cka_of_independent_noise_is_near_zero_and_invariant_to_rotation_and_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(512, 24)).astype(np.float32)
    y = rng.normal(size=(512, 16)).astype(np.float32)
    q, _ = np.linalg.qr(rng.normal(size=(24, 24)))
    res = cka_matrix([x], [y, (3.0 * x @ q).astype(np.float32)], batch_size=128)
    assert abs(res["cka"][0][0]) < 0.05
    assert res["cka"][0][1] == pytest.approx(1.0, abs=1e-6)
    assert res["num_batches"] == 4 and res["batch_size"] == 128


def test_u_centring_gives_the_unbiased_hsic_of_song_et_al():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(12, 5, generator=g), torch.randn(12, 7, generator=g)
    k, l = (a @ a.T).double(), (b @ b.T).double()
    via_u = float((_u_center(k) * _u_center(l)).sum() / (12 * 9))
    assert via_u == pytest.approx(hsic_unbiased(k, l), rel=1e-10)


def test_minibatch_cka_agrees_with_one_batch_cka():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1200, 20)).astype(np.float32)
    y = (x @ rng.normal(size=(20, 12)) + 2.0 * rng.normal(size=(1200, 12))).astype(np.float32)
    full = cka_matrix([x], [y], batch_size=1200)["cka"][0][0]
    mini = cka_matrix([x], [y], batch_size=100)
    assert mini["num_batches"] == 12
    assert mini["cka"][0][0] == pytest.approx(full, abs=0.03)
    assert 0.1 < full < 0.95


def test_cka_needs_four_rows():
    with pytest.raises(LRCError, match="at least 4"):
        cka_matrix([np.ones((3, 2), np.float32)], [np.ones((3, 2), np.float32)])


@pytest.mark.parametrize("tokens", [False, True])
def test_negative_cosines_match_a_brute_force_loop(tokens):
    g = torch.Generator().manual_seed(0)
    b, length, d = 5, 6, 8
    mask = torch.ones(b, length, dtype=torch.long)
    mask[1, 4:] = 0
    mask[3, 2:] = 0
    s, t = torch.randn(b, length, d, generator=g), torch.randn(b, length, d, generator=g)
    if tokens:
        where = mask.bool().nonzero()
        ex, pos = where[:, 0], where[:, 1]
        s_rows, t_rows = s[ex, pos], t[ex, pos]
    else:
        ex, pos = torch.arange(b), torch.zeros(b, dtype=torch.long)
        s_rows, t_rows = s[:, 0], t[:, 0]
    own, neg = _example_cosines(s_rows, t_rows, ex, pos, b)
    cos = torch.nn.functional.cosine_similarity
    for i in range(b):
        positions = [p for p in range(length) if mask[i, p]] if tokens else [0]
        want_own = np.mean([float(cos(s[i, p], t[i, p], dim=0)) for p in positions])
        pairs = [float(cos(s[i, p], t[j, p], dim=0)) for p in positions for j in range(b)
                 if j != i and (not tokens or mask[j, p])]
        assert float(own[i]) == pytest.approx(want_own, abs=1e-6)
        assert float(neg[i]) == pytest.approx(np.mean(pairs), abs=1e-6)


@pytest.mark.parametrize("representation", ["tokens", "cls", "mean"])
def test_probe_alignment_agrees_with_the_cos_nce_loss_and_restores_modes(tokenizer, representation):
    teacher = make_tiny_teacher(tokenizer.vocab_size)
    student = make_tiny_student(tokenizer.vocab_size)
    projections = Projections(16, 32, 2)
    batch = _batches(tokenizer, n=6, batch_size=6)[0]
    student.train()
    result = probe_alignment(student, projections, teacher, batch, [2, 4], representation)
    assert student.training and not teacher.training
    json.dumps(result, allow_nan=False)
    assert result["layers"] == [2, 4] and len(result["cos_own"]) == len(result["cos_neg"]) == 2
    assert result["probe_examples"] == 6
    # the same numbers the in-batch COS-NCE loss is made of: loss = 2 - 1.5 own + 0.5 neg per example
    from lrc.train import represent

    student.eval()
    with torch.no_grad():
        s_out = student(**batch, output_hidden_states=True)
        t_out = teacher(**batch, output_hidden_states=True)
        mask = batch["attention_mask"]
        for i, layer in enumerate([2, 4]):
            s = represent(projections(i, s_out.hidden_states[i + 1]), mask, representation)
            t = represent(t_out.hidden_states[layer], mask, representation)
            loss = float(cos_nce(s, t, None, mask if representation == "tokens" else None))
            assert 2 - 1.5 * result["cos_own"][i] + 0.5 * result["cos_neg"][i] == pytest.approx(loss, abs=1e-5)


def test_probe_reuses_the_frozen_teachers_side(tokenizer):
    teacher = make_tiny_teacher(tokenizer.vocab_size)
    student = make_tiny_student(tokenizer.vocab_size)
    projections = Projections(16, 32, 2)
    batch = _batches(tokenizer, n=6, batch_size=6)[0]
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    first = probe_alignment(student, projections, teacher, batch, [2, 4], "tokens")
    second = probe_alignment(student, projections, teacher, batch, [2, 4], "tokens")
    assert first == second and len(calls) == 1
    other = _batches(tokenizer, n=12, batch_size=6)[1]
    probe_alignment(student, projections, teacher, other, [2, 4], "tokens")
    assert len(calls) == 2  # another probe batch is another teacher pass


def test_projector_sources_and_a_not_comparable_width(tokenizer):
    w = (np.eye(32, 16, dtype=np.float32), np.zeros(32, np.float32))
    proj = Projector(16, 32, {1: w, 2: w})
    assert [proj.source(k) for k in range(3)] == ["W1 (borrowed)", "W1", "W2"]
    assert Projector(32, 32).source(0) == "identity"
    assert Projector(16, 32).source(1) is None
    teacher = make_tiny_teacher(tokenizer.vocab_size)
    student = make_tiny_student(tokenizer.vocab_size)
    batches = _batches(tokenizer, n=8)
    t = collect_representations(teacher, batches, "cls")
    s = collect_representations(student, batches, "cls")
    sim = similarity_matrix(t, s, Projector(16, 32))
    assert all(math.isnan(v) for row in sim["cos_own"] for v in row)
    sim = similarity_matrix(t, s, proj)
    assert not any(math.isnan(v) for row in sim["cos_own"] for v in row)
    mapped = mapped_cosines(sim, [2, 4])
    assert mapped["student_layers"] == [1, 2] and mapped["teacher_layers"] == [2, 4]
    assert mapped["cos_own"] == [sim["cos_own"][2][1], sim["cos_own"][4][2]]


def test_representations_of_different_tokenizations_are_refused(tokenizer):
    model = make_tiny_teacher(tokenizer.vocab_size)
    a = collect_representations(model, _batches(tokenizer, n=8), "tokens")
    b = collect_representations(model, _batches(tokenizer, n=8, max_length=5), "tokens")
    with pytest.raises(LRCError, match="same examples"):
        similarity_matrix(a, b, Projector(32, 32))


def test_pca_map_shape_and_determinism():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 12)), rng.normal(size=(40, 12))
    m1, m2 = Map2D("pca", seed=3), Map2D("pca", seed=3)
    a, b = m1.fit(x), m2.fit(x)
    assert a.shape == (40, 2) and np.array_equal(a, b)
    assert m1.transform(y).shape == (40, 2) and np.array_equal(m1.transform(y), m2.transform(y))
    # a point is placed by its direction only
    assert np.allclose(m1.transform(5 * x[:3]), a[:3])


def test_umap_map_shape_and_determinism_with_a_seed():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 8)).astype(np.float32)
    y = x + 0.05 * rng.normal(size=x.shape).astype(np.float32)
    m1, m2 = Map2D("umap", seed=7), Map2D("umap", seed=7)
    a = m1.fit(x)
    b = m2.fit(x)
    assert m1.method == "umap" and a.shape == (60, 2)
    assert np.array_equal(a, b)
    ty = m1.transform(y)
    assert ty.shape == (60, 2) and np.array_equal(ty, m2.transform(y))


def test_umap_on_too_few_points_falls_back_to_pca():
    m = Map2D("umap")
    assert m.fit(np.random.default_rng(0).normal(size=(6, 4))).shape == (6, 2)
    assert m.method == "pca"
    with pytest.raises(LRCError):
        Map2D("tsne")


def test_read_snapshots_orders_and_fills_margin():
    events = [{"type": "step", "step": 1},
              {"type": "snapshot", "step": 4, "layers": [2], "cos_own": [0.8], "cos_neg": [0.1]},
              {"type": "snapshot", "step": 0, "layers": [2], "cos_own": [0.5], "cos_neg": [0.2]}]
    snaps = read_snapshots(events)
    assert [s["step"] for s in snaps] == [0, 4]
    assert snaps[1]["margin"] == [pytest.approx(0.7)]


# ---- a real (tiny) run ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_teacher_dir, shared_glue_dir):
    return make_tiny_run(tmp_path_factory.mktemp("runs"), tiny_teacher_dir, shared_glue_dir)


def test_trainer_records_snapshots(tiny_run):
    _store, _run, events = tiny_run
    snaps = [e for e in events if e["type"] == "snapshot"]
    assert [s["step"] for s in snaps] == [0, 2, 4]
    for s in snaps:
        assert s["layers"] == [2, 4] and len(s["cos_own"]) == 2 and s["probe_examples"] == 6
        assert all(-1.0 <= v <= 1.0 for v in s["cos_own"] + s["cos_neg"])


def test_run_analysis_views_and_cache(tiny_run):
    _store, run, _ = tiny_run
    analysis = RunAnalysis(run.path)
    assert analysis.shape() == {"teacher_layers": 4, "student_layers": 2, "layer_map": [2, 4]}
    sim = analysis.similarity("trained", "tokens", 8)
    assert len(sim["cos_own"]) == 5 and len(sim["cos_own"][0]) == 3
    assert sim["projection_source"] == ["W1 (borrowed)", "W1", "W2"]
    assert sim["num_examples"] == 8 and not sim["cached"] and sim["seconds"] > 0
    assert sim["mapped"]["teacher_layers"] == [2, 4]
    again = analysis.similarity("trained", "tokens", 8)
    assert again["cached"] and again["cos_own"] == sim["cos_own"]
    assert again["lookup_seconds"] < 0.05
    cka = analysis.cka("trained", "tokens", 8)
    assert len(cka["cka"]) == 5 and len(cka["cka"][0]) == 3
    sc = analysis.scatter(4, 2, "trained", "tokens", 8, "pca")
    assert len(sc["teacher_xy"]) == len(sc["student_xy"]) == len(sc["texts"]) == 8
    assert set(sc["teacher_pred"]) <= {"negative", "positive"} and sc["label_names"] == ["negative", "positive"]
    json.dumps(sim), json.dumps(cka), json.dumps(sc)
    # the last snapshot is of the saved student on the first probe examples: same measure, same numbers
    snaps = analysis.snapshots()
    assert [s["step"] for s in snaps] == [0, 2, 4]


def test_initial_student_is_rebuilt_and_shares_the_teacher_map(tiny_run):
    _store, run, _ = tiny_run
    analysis = RunAnalysis(run.path)
    trained = analysis.scatter(4, 2, "trained", "cls", 8, "pca")
    initial = analysis.scatter(4, 2, "initial", "cls", 8, "pca")
    assert trained["teacher_xy"] == initial["teacher_xy"]  # one teacher fit for both
    assert trained["student_xy"] != initial["student_xy"]
    start = time.perf_counter()
    analysis.scatter(4, 2, "initial", "cls", 8, "pca")
    assert time.perf_counter() - start < 0.05


def _held_sizes(analysis: RunAnalysis) -> set[int]:
    return {key[2] for key in analysis._reps_bytes}


def test_run_analysis_cache_keeps_to_its_budget_least_recent_first(tiny_run):
    _store, run, _ = tiny_run
    unlimited = RunAnalysis(run.path, max_cache_bytes=10**12)
    for n in (2, 4, 8):
        unlimited.similarity("trained", "tokens", n)
    size = {n: sum(v for k, v in unlimited._reps_bytes.items() if k[2] == n) for n in (2, 4, 8)}
    assert _held_sizes(unlimited) == {2, 4, 8} and unlimited.cache_bytes() == sum(size.values())
    assert size[2] < size[4] < size[8]  # more examples, more token rows

    # budget 0: only the size in use stays; what was computed from evicted vectors is still served
    none = RunAnalysis(run.path, max_cache_bytes=0)
    first = none.similarity("trained", "tokens", 2)
    none.similarity("trained", "tokens", 4)
    assert _held_sizes(none) == {4} and none.cache_bytes() == size[4]
    assert ("batches", 2) not in none._cache and ("batches", 4) in none._cache
    again = none.similarity("trained", "tokens", 2)
    assert again["cached"] and again["cos_own"] == first["cos_own"]
    assert _held_sizes(none) == {4}
    cka = none.cka("trained", "tokens", 2)  # needs the vectors again: recomputed, same numbers as unlimited's
    assert not cka["cached"] and cka["cka"] == unlimited.cka("trained", "tokens", 2)["cka"]
    assert _held_sizes(none) == {2}

    # a budget for all three but one byte: 4 was used least recently, so it goes when 8 arrives
    lru = RunAnalysis(run.path, max_cache_bytes=sum(size.values()) - 1)
    lru.similarity("trained", "tokens", 2)
    lru.similarity("trained", "tokens", 4)
    lru.representations("teacher", "tokens", 2), lru.representations("trained", "tokens", 2)  # 2 used again
    lru.similarity("trained", "tokens", 8)
    assert _held_sizes(lru) == {2, 8} and lru.cache_bytes() <= lru.max_cache_bytes
    with pytest.raises(LRCError, match="max_cache_bytes must be >= 0"):
        RunAnalysis(run.path, max_cache_bytes=-1)


def test_views_report_progress_per_batch_and_stay_quiet_when_cached(tiny_run):
    _store, run, _ = tiny_run
    analysis = RunAnalysis(run.path)
    heard: list[tuple[float, str]] = []
    analysis.similarity("trained", "tokens", 8, progress=lambda f, d: heard.append((f, d)))
    texts = [d for _f, d in heard]
    assert texts[0] == "teacher: loading" and "angular similarity of every layer pair" == texts[-1]
    for who in ("teacher, 8 examples", "trained student, 8 examples"):
        batches = [(f, d) for f, d in heard if d.startswith(f"{who}: batch")]
        assert batches and batches[-1][0] == 1.0  # one report per batch, the last one complete
        assert [f for f, _d in batches] == sorted(f for f, _d in batches)
    assert all(0.0 <= f <= 1.0 for f, _d in heard)
    heard.clear()
    analysis.similarity("trained", "tokens", 8, progress=lambda f, d: heard.append((f, d)))
    analysis.cka("trained", "tokens", 8, progress=lambda f, d: heard.append((f, d)))  # vectors are cached
    assert [d for _f, d in heard] == ["linear CKA of every layer pair"]
    heard.clear()
    analysis.scatter(4, 2, "trained", "tokens", 8, "pca", progress=lambda f, d: heard.append((f, d)))
    assert [d for _f, d in heard] == ["fitting the PCA map on 8 teacher points",
                                      "placing the student's points in the PCA map"]


def test_registry_budget_applies_to_analyses_already_made(tiny_run):
    _store, run, _ = tiny_run
    clear_run_analyses()
    try:
        analysis = get_run_analysis(run.path)
        assert analysis.max_cache_bytes == DEFAULT_CACHE_MB * 2**20
        set_cache_budget(5 * 2**20)
        assert analysis.max_cache_bytes == 5 * 2**20
        assert get_run_analysis(run.path) is analysis
        with pytest.raises(LRCError, match="budget must be >= 0"):
            set_cache_budget(-1)
    finally:
        set_cache_budget(None)
        clear_run_analyses()
    assert get_run_analysis(run.path).max_cache_bytes == DEFAULT_CACHE_MB * 2**20
    clear_run_analyses()


def test_run_analysis_refuses_what_it_cannot_show(tmp_path, tiny_run):
    with pytest.raises(LRCError, match="not a run folder"):
        RunAnalysis(tmp_path)
    _store, run, _ = tiny_run
    with pytest.raises(LRCError, match="does not exist"):
        RunAnalysis(run.path).scatter(9, 1, "trained", "cls", 8, "pca")
