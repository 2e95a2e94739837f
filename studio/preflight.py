"""Checks that need the teacher's config, done before a run is queued.

`DistillConfig.validate` checks every knob on its own; what it cannot know is the teacher: whether the id or
folder names a BERT-like encoder at all, and how many layers it has. Without this a wrong hub id or an 8-layer
student for a 6-layer teacher would queue, wait its turn, and only then fail; here it is a message at once and
no run folder is written. Only the config is read (no weights), so the check takes milliseconds for a local
folder and one small download for a hub id.
"""

from __future__ import annotations

from lrc.config import DistillConfig


# lrc.models imports torch and transformers, which cost seconds: imported when a run is checked, not at app start

def teacher_layers(teacher: str | None) -> int:
    """The teacher's layer count, after refusing a model that is not a BERT-like encoder (None = bundled)."""
    from lrc.models import load_encoder_config

    config = load_encoder_config(teacher)
    return int(config.num_hidden_layers)


def check_against_teacher(cfg: DistillConfig) -> None:
    """The student fits the teacher: no more layers than it has, and a layer map inside its layers."""
    from lrc.models import check_layer_map, check_student_fits

    layers = teacher_layers(cfg.teacher)
    who = f"teacher {cfg.teacher}" if cfg.teacher else "the bundled teacher"
    check_student_fits(cfg.student.layers, layers, who)
    if cfg.layer_map is not None:
        check_layer_map(list(cfg.layer_map), layers)
