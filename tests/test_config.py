"""DistillConfig validation messages, (de)serialisation and the shipped presets."""

from __future__ import annotations

import pytest

from lrc.config import DistillConfig, StudentConfig, config_from_preset, list_presets, load_preset
from lrc.errors import ConfigError, LRCError


def test_defaults_are_valid_and_match_the_method():
    cfg = DistillConfig().validate()
    assert (cfg.alpha, cfg.beta, cfg.gamma) == (1.0, 1.0, 3.0)
    assert cfg.temperature == pytest.approx(1.1)
    assert cfg.stage1_fraction == pytest.approx(0.8) and cfg.epsilon == 1.0
    assert (cfg.representation, cfg.negatives, cfg.projection, cfg.num_negatives) == ("tokens", "batch", "per_layer", 15)
    assert (cfg.student.layers, cfg.student.hidden, cfg.student.heads, cfg.student.ffn) == (4, 312, 12, 1200)
    assert cfg.two_stage and cfg.perturb and cfg.use_cos_nce


@pytest.mark.parametrize("changes, field", [
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": -3}, "batch_size"),
    ({"lr": -1.0}, "lr"),
    ({"lr": 0.0}, "lr"),
    ({"lr": float("nan")}, "lr"),
    ({"lr": float("inf")}, "lr"),
    ({"lr": "fast"}, "lr"),
    ({"temperature": 0.0}, "temperature"),
    ({"epsilon": -0.1}, "epsilon"),
    ({"gamma": -1.0}, "gamma"),
    ({"stage1_fraction": 1.5}, "stage1_fraction"),
    ({"warmup_ratio": -0.1}, "warmup_ratio"),
    ({"max_seq_length": 0}, "max_seq_length"),
    ({"max_seq_length": 4096}, "max_seq_length"),
    ({"epochs": 0.0}, "epochs"),
    ({"max_steps": -1}, "max_steps"),
    ({"representation": "pooler"}, "representation"),
    ({"negatives": "queue"}, "negatives"),
    ({"distance": "l1"}, "distance"),
    ({"projection": "none"}, "projection"),
    ({"mixed_precision": "fp8"}, "mixed_precision"),
    ({"device": "tpu"}, "device"),
    ({"batch_size": True}, "batch_size"),
])
def test_nonsense_values_name_the_field(changes, field):
    with pytest.raises(ConfigError) as info:
        DistillConfig(**changes).validate()
    message = str(info.value)
    assert message.startswith(field) or f" {field} " in message or field in message.split()[0], message
    assert repr(next(iter(changes.values()))) in message or "got" in message


def test_nan_is_called_not_finite():
    with pytest.raises(ConfigError, match="finite"):
        DistillConfig(temperature=float("nan")).validate()


def test_zero_epochs_allowed_when_max_steps_given():
    DistillConfig(epochs=0.0, max_steps=10).validate()


def test_heads_must_divide_hidden():
    with pytest.raises(ConfigError, match=r"student.hidden \(312\) must be divisible by student.heads \(5\)"):
        DistillConfig(student=StudentConfig(heads=5)).validate()


def test_student_shape_ranges():
    with pytest.raises(ConfigError, match="student.layers"):
        DistillConfig(student=StudentConfig(layers=0)).validate()
    with pytest.raises(ConfigError, match="student.init"):
        DistillConfig(student=StudentConfig(init="magic")).validate()
    with pytest.raises(ConfigError, match="checkpoint"):
        DistillConfig(student=StudentConfig(init="checkpoint")).validate()


def test_in_batch_negatives_need_two_per_batch():
    with pytest.raises(ConfigError, match="batch_size >= 2"):
        DistillConfig(batch_size=1).validate()
    DistillConfig(batch_size=1, negatives="bank").validate()
    DistillConfig(batch_size=1, use_cos_nce=False, alpha=0.0).validate()


def test_bank_needs_more_examples_than_negatives():
    with pytest.raises(ConfigError, match="num_negatives"):
        DistillConfig(negatives="bank", num_negatives=15, max_train_examples=10).validate()


def test_layer_map_checks():
    with pytest.raises(ConfigError, match="layer_map has 2 entries but the student has 4"):
        DistillConfig(layer_map=[1, 2]).validate()
    with pytest.raises(ConfigError, match="1-based"):
        DistillConfig(layer_map=[0, 1, 2, 3]).validate()
    DistillConfig(layer_map=[1, 2, 3, 4]).validate()


def test_all_zero_weights_rejected():
    with pytest.raises(ConfigError, match="zero"):
        DistillConfig(use_cos_nce=False, alpha=0.0, beta=0.0, gamma=0.0).validate()


def test_unknown_keys_are_named():
    with pytest.raises(ConfigError, match="unknown config key\\(s\\): bogus, lr_rate"):
        DistillConfig.from_dict({"lr_rate": 1e-4, "bogus": 1})
    with pytest.raises(ConfigError, match="unknown student key\\(s\\): width"):
        DistillConfig.from_dict({"student": {"width": 3}})
    with pytest.raises(ConfigError, match="student"):
        DistillConfig.from_dict({"student": 4})


def test_round_trip_and_override():
    cfg = DistillConfig(task="rte", lr=3e-5, student=StudentConfig(layers=2, hidden=128, heads=2, ffn=512))
    again = DistillConfig.from_dict(cfg.to_dict())
    assert again == cfg
    changed = cfg.override(student_layers=3, batch_size=8, lr=None)
    assert changed.student.layers == 3 and changed.batch_size == 8 and changed.lr == 3e-5
    assert cfg.student.layers == 2  # the original is untouched
    with pytest.raises(ConfigError):
        cfg.override(student_depth=3)


def test_config_error_is_an_lrc_error():
    assert issubclass(ConfigError, LRCError) and issubclass(ConfigError, ValueError)


# ---- presets ---------------------------------------------------------------------------------------------------

def test_presets_are_listed():
    assert {"quick-cpu", "lrc-paper", "kd-baseline"} <= set(list_presets())


@pytest.mark.parametrize("name", ["quick-cpu", "lrc-paper", "kd-baseline"])
def test_presets_load_and_validate(name):
    data = load_preset(name)
    assert "description" not in data
    config_from_preset(name).validate()


def test_lrc_paper_preset_has_the_paper_shape():
    cfg = config_from_preset("lrc-paper")
    assert (cfg.student.layers, cfg.student.hidden, cfg.student.heads, cfg.student.ffn) == (4, 312, 12, 1200)
    assert (cfg.alpha, cfg.beta, cfg.gamma, cfg.temperature) == (1.0, 1.0, 3.0, 1.1)
    assert cfg.two_stage and cfg.perturb and cfg.use_cos_nce and cfg.stage1_fraction == 0.8


def test_kd_baseline_preset_turns_lrc_off():
    cfg = config_from_preset("kd-baseline")
    assert not cfg.use_cos_nce and not cfg.perturb and not cfg.two_stage and cfg.alpha == 0.0
    assert cfg.beta > 0 and cfg.gamma > 0


def test_preset_overrides_apply():
    cfg = config_from_preset("quick-cpu", batch_size=4, student_layers=1)
    assert cfg.batch_size == 4 and cfg.student.layers == 1
    assert cfg.max_seq_length == load_preset("quick-cpu")["max_seq_length"]


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset 'nope'.*quick-cpu"):
        load_preset("nope")


def test_preset_from_a_path(tmp_path):
    good = tmp_path / "mine.yaml"
    good.write_text("description: x\nbatch_size: 8\nstudent:\n  layers: 1\n")
    cfg = config_from_preset(str(good))
    assert cfg.batch_size == 8 and cfg.student.layers == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("batch_size: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_preset(str(bad))
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_preset(str(listy))
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("batchsize: 8\n")
    with pytest.raises(ConfigError, match="batchsize"):
        config_from_preset(str(unknown))
