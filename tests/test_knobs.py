"""One schema per knob: every field of DistillConfig reaches the CLI, the app (form or API) and the docs table, and a
new field needs nothing else to get there."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lrc.cli import _config, build_parser
from lrc.config import DistillConfig, config_from_preset, list_presets, load_preset
from lrc.errors import ConfigError
from lrc.knobs import knob, knobs, markdown_table
from studio import form

ROOT = Path(__file__).resolve().parent.parent


def _flags(command: str) -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {s for a in sub._actions for s in a.option_strings}


def test_every_knob_has_a_cli_flag():
    flags = _flags("distill")
    for k in knobs(DistillConfig):
        assert k.flag in flags, k.name
        if k.kind == "bool":
            assert k.off_flag in flags, k.name


def test_every_app_knob_reaches_the_form_or_the_api():
    for k in knobs(DistillConfig):
        if k.info.app == "form":
            assert k.name in form.FORM_FIELDS and k.name in form.PRESET_FIELDS, k.name
        if k.info.app in ("form", "api"):
            assert k.name in form.SETTABLE, k.name
        else:
            assert k.name not in form.SETTABLE, k.name


def test_the_docs_table_is_the_generated_one():
    """docs/KNOBS.md holds `python -m lrc knobs --markdown` as it is now: a knob added without regenerating it
    fails here, with the command that mends it."""
    text = (ROOT / "docs" / "KNOBS.md").read_text(encoding="utf-8")
    assert markdown_table(DistillConfig) in text, "regenerate docs/KNOBS.md: python -m lrc knobs --markdown"
    for k in knobs(DistillConfig):
        assert f"| `{k.name}` |" in text


def test_a_new_knob_is_one_field():
    """A config class with one more field: the CLI, the form builder's knob list and the docs table all see it."""
    @dataclasses.dataclass
    class Grown(DistillConfig):
        shiny: float = knob(0.5, group="loss", ge=0.0, le=1.0, help="A knob added for this test.")

    names = {k.name for k in knobs(Grown)}
    assert "shiny" in names and "| `shiny` | `--shiny` | `0.5` | between 0 and 1 | form |" in markdown_table(Grown)
    with pytest.raises(ConfigError, match="shiny must be between 0 and 1; got 2.0"):
        next(k for k in knobs(Grown) if k.name == "shiny").check(2.0)


def test_cli_values_are_converted_and_checked_by_their_knob():
    args = build_parser().parse_args(["distill", "--task", "rte", "--lr", "3e-5", "--student-layers", "3",
                                      "--no-perturb", "--perturb-norm", "sequence", "--layer-map", "2,4,6"])
    cfg = _config(args)
    assert cfg.lr == 3e-5 and cfg.student.layers == 3 and cfg.perturb is False and cfg.perturb_norm == "sequence"
    assert cfg.layer_map == [2, 4, 6]
    with pytest.raises(ConfigError, match="perturb_norm must be one of token, sequence, relative; got 'fgm'"):
        _config(build_parser().parse_args(["distill", "--task", "rte", "--perturb-norm", "fgm"]))


def test_presets_refuse_unknown_keys_by_name(tmp_path):
    bad = tmp_path / "typo.yaml"
    bad.write_text("description: x\nepsilonn: 0.1\nstudent:\n  layerz: 2\n")
    with pytest.raises(ConfigError, match="epsilonn"):
        config_from_preset(str(bad))
    nested = tmp_path / "nested.yaml"
    nested.write_text("student:\n  layerz: 2\n")
    with pytest.raises(ConfigError, match="unknown student key\\(s\\): layerz"):
        config_from_preset(str(nested))


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_is_valid_and_reaches_the_form(name):
    cfg = config_from_preset(name)
    values = form.form_values(name)
    for k in form.FORM_KNOBS:
        assert values[k.name] == k.get(cfg) or (k.name == "student_init" and values[k.name] == "auto"), k.name
    assert set(load_preset(name)) <= {f.name for f in dataclasses.fields(DistillConfig)}


def test_yaml_numbers_written_as_text_are_read_as_numbers(tmp_path):
    preset = tmp_path / "p.yaml"
    preset.write_text("lr: 1e-4\nteacher_lr: 3e-5\n")  # YAML 1.1 reads these as strings
    cfg = config_from_preset(str(preset))
    assert cfg.lr == 1e-4 and cfg.teacher_lr == 3e-5
