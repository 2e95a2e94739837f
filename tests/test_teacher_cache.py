"""The teacher cache (issue 5): reused outputs must give the same training as running the teacher live."""

from __future__ import annotations

import torch

from conftest import tiny_config
from lrc.models import load_classifier, load_tokenizer
from lrc.execute import execute as _execute, load_data
from lrc.runs import RunStore
from lrc.teacher_cache import build_or_load
from lrc.data import tokenize


def _losses(tmp_path, name, cfg, teacher_dir):
    run = RunStore(tmp_path / name).create(cfg.to_dict())
    events = list(_execute(run, cfg, None, "distill", None, teacher_spec=str(teacher_dir)))
    return [e for e in events if e["type"] == "step"], events[0]


def test_cached_run_equals_live_run(tmp_path, monkeypatch, shared_glue_dir, tiny_teacher_dir):
    monkeypatch.setenv("LRC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr("lrc.teacher_cache.DEFAULT_DIR", tmp_path / "cache")
    for rep in ("tokens", "cls"):
        base = dict(data_dir=str(shared_glue_dir), teacher=str(tiny_teacher_dir), representation=rep, max_steps=5)
        live, _ = _losses(tmp_path, f"live-{rep}", tiny_config(**base), tiny_teacher_dir)
        cached, start = _losses(tmp_path, f"cached-{rep}", tiny_config(teacher_cache=True, **base), tiny_teacher_dir)
        assert start["teacher_cache"]["cached"] is False
        for a, b in zip(live, cached):
            for key in ("loss", "cos_nce", "soft", "hard"):
                if key in a:
                    assert abs(a[key] - b[key]) < 1e-5, (rep, key, a[key], b[key])
        # the second run with the same key reads the file instead of running the teacher
        again, start2 = _losses(tmp_path, f"again-{rep}", tiny_config(teacher_cache=True, **base), tiny_teacher_dir)
        assert start2["teacher_cache"]["cached"] is True
        assert [e["loss"] for e in again] == [e["loss"] for e in cached]


def _inputs(shared_glue_dir, tiny_teacher_dir, **changes):
    cfg = tiny_config(data_dir=str(shared_glue_dir), teacher=str(tiny_teacher_dir), **changes)
    data = load_data(cfg)
    tok = load_tokenizer(str(tiny_teacher_dir))
    teacher = load_classifier(str(tiny_teacher_dir), data.task)
    return cfg, data, tok, teacher


def test_cache_key_invalidation_and_damage(tmp_path, shared_glue_dir, tiny_teacher_dir):
    cfg, data, tok, teacher = _inputs(shared_glue_dir, tiny_teacher_dir)
    train = tokenize(data.train, tok, 16)

    def build(ds=train, layers=(2, 4), rep="tokens"):
        return build_or_load(teacher, str(tiny_teacher_dir), ds, tok, list(layers), rep, 16, torch.device("cpu"),
                             cache_dir=tmp_path)

    cache, hit = build()
    assert not hit and cache.offsets[-1] == sum(len(x) for x in train["input_ids"])
    assert build()[1] is True
    assert build(layers=(1, 4))[1] is False  # another layer map
    assert build(rep="mean")[1] is False  # another representation
    assert build(ds=tokenize(data.train, tok, 8))[1] is False  # another max length: other token ids
    # a damaged file is rebuilt, not read
    files = sorted(tmp_path.glob("*.safetensors"))
    files[0].write_bytes(b"garbage")
    rebuilt = [build(), build(layers=(1, 4)), build(rep="mean")]
    assert all(isinstance(c.logits, torch.Tensor) for c, _ in rebuilt)


def test_cache_negatives_never_pick_the_sample_itself(tmp_path, shared_glue_dir, tiny_teacher_dir):
    cfg, data, tok, teacher = _inputs(shared_glue_dir, tiny_teacher_dir)
    train = tokenize(data.train, tok, 16)
    cache, _ = build_or_load(teacher, str(tiny_teacher_dir), train, tok, [4], "cls", 16, torch.device("cpu"),
                             cache_dir=tmp_path)
    rows = torch.arange(len(train))
    gen = torch.Generator().manual_seed(0)
    negs, mask = cache.negatives(rows, 7, 16, torch.device("cpu"), gen)
    assert mask is None and negs[0].shape == (len(train), 7, cache.layers[0].shape[1])
    own = cache.layers[0][rows]
    same = (negs[0] - own[:, None]).abs().sum(-1) == 0
    assert not same.any()


def test_bank_mode_with_cache_trains(tmp_path, monkeypatch, shared_glue_dir, tiny_teacher_dir):
    monkeypatch.setattr("lrc.teacher_cache.DEFAULT_DIR", tmp_path / "cache")
    cfg = tiny_config(data_dir=str(shared_glue_dir), teacher=str(tiny_teacher_dir), teacher_cache=True,
                      negatives="bank", num_negatives=5, max_steps=4)
    steps, start = _losses(tmp_path, "bank", cfg, tiny_teacher_dir)
    assert len(steps) == 4 and all("cos_nce" in e for e in steps)


def test_two_in_memory_teachers_never_share_a_key(tmp_path, shared_glue_dir, tiny_teacher_dir):
    from conftest import make_tiny_teacher

    cfg, data, tok, _ = _inputs(shared_glue_dir, tiny_teacher_dir)
    train = tokenize(data.train, tok, 16)
    a = make_tiny_teacher(tok.vocab_size, seed=0).eval()
    b = make_tiny_teacher(tok.vocab_size, seed=1).eval()
    ca, _ = build_or_load(a, None, train, tok, [2], "cls", 16, torch.device("cpu"), cache_dir=tmp_path)
    cb, hit = build_or_load(b, None, train, tok, [2], "cls", 16, torch.device("cpu"), cache_dir=tmp_path)
    assert not hit and not torch.equal(ca.logits, cb.logits)
