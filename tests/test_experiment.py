"""The experiment runner (issue 7) and the robustness corruptions, on tiny models."""

from __future__ import annotations

import random

import pytest
from datasets import Dataset

from conftest import tiny_config
from lrc.errors import ConfigError
from lrc.experiment import VARIANTS, ExperimentSpec, markdown_table, run_experiment
from lrc.robustness import corrupt, corrupt_dataset
from lrc.runs import RunStore, read_json


def test_corruptions_are_deterministic_and_change_text():
    text = "the quick brown fox jumps over the lazy dog again and again"
    for kind in ("typo", "drop", "swap"):
        a = corrupt(text, kind, 0.5, random.Random(1))
        b = corrupt(text, kind, 0.5, random.Random(1))
        assert a == b, kind
        assert a != text, kind
    assert corrupt(text, "typo", 0.0, random.Random(1)) == text
    assert corrupt(None, "drop", 0.5, random.Random(1)) is None
    # a drop never empties a sentence
    assert corrupt("word", "drop", 1.0, random.Random(3)) == "word"
    with pytest.raises(ValueError):
        corrupt(text, "shout", 0.1, random.Random(0))


def test_corrupt_dataset_keeps_labels_and_pairs():
    ds = Dataset.from_dict({"text_a": ["a b c d", "e f g h"], "text_b": [None, None], "label": [0, 1], "idx": [0, 1]})
    out = corrupt_dataset(ds, "swap", 1.0, seed=0)
    assert out["label"] == [0, 1] and out["idx"] == [0, 1]
    assert out["text_b"] == [None, None]
    assert sorted(out["text_a"][0].split()) == ["a", "b", "c", "d"]
    assert corrupt_dataset(ds, "swap", 1.0, seed=0)["text_a"] == out["text_a"]


def test_unknown_variant_is_refused(tmp_path):
    spec = ExperimentSpec("x", tiny_config(), ["lrc", "nonsense"], [0])
    with pytest.raises(ConfigError, match="nonsense"):
        list(run_experiment(spec, RunStore(tmp_path)))


def test_experiment_runs_variants_over_seeds(tmp_path, shared_glue_dir, tiny_teacher_dir):
    cfg = tiny_config(data_dir=str(shared_glue_dir), teacher=str(tiny_teacher_dir), max_steps=2)
    spec = ExperimentSpec("exp-t", cfg, ["finetune", "kd", "lrc", "lrc-mse"], [0, 1], robustness_rates=(0.3,))
    store = RunStore(tmp_path / "runs")
    events = list(run_experiment(spec, store))
    assert events[-1]["type"] == "experiment_done"
    result = read_json(store.root / "exp-t" / "experiment.json")
    assert set(result["table"]) == {"finetune", "kd", "lrc", "lrc-mse"}
    for row in result["table"].values():
        assert row["n"] == 2 and 0.0 <= row["mean"] <= 1.0
    # every variant-seed is an ordinary run the app can list
    ids = {r.id for r in store.list()}
    assert {"exp-t-lrc-s0", "exp-t-lrc-s1", "exp-t-kd-s0", "exp-t-finetune-s1"} <= ids
    # each variant really ran with its own settings
    kd_events = store.get("exp-t-kd-s0").read_events()
    assert not any("cos_nce" in e for e in kd_events if e["type"] == "step")
    lrc_events = store.get("exp-t-lrc-s0").read_events()
    assert any("cos_nce" in e for e in lrc_events if e["type"] == "step")
    assert store.get("exp-t-lrc-mse-s1").config["distance"] == "mse"
    assert store.get("exp-t-finetune-s0").summary["kind"] == "finetune"
    rob = result["robustness"]
    assert set(rob) == {"kd", "lrc"} and "typo@0.3" in rob["lrc"] and "clean@0" in rob["lrc"]
    table = markdown_table(result)
    assert "| lrc |" in table and "typo@0.3" in table
    # a second call resumes: completed runs are not trained again
    again = list(run_experiment(spec, store))
    assert not any(e["type"] == "variant" for e in again)


def test_variant_registry_covers_the_paper_ablations():
    assert {"finetune", "kd", "lrc", "lrc-no-cosnce", "lrc-no-perturb", "lrc-one-stage", "lrc-mse"} <= set(VARIANTS)


def test_the_runs_tab_shows_an_experiment_as_one_table_and_one_plot(tmp_path, shared_glue_dir, tiny_teacher_dir):
    from studio.jobs import JobManager
    from studio.state import AppContext, AppSettings
    from studio.ui import Studio
    from lrc.experiment import experiment_rows, list_experiments, load_experiment

    cfg = tiny_config(data_dir=str(shared_glue_dir), teacher=str(tiny_teacher_dir), max_steps=2)
    store = RunStore(tmp_path / "runs")
    list(run_experiment(ExperimentSpec("exp-v", cfg, ["kd", "lrc"], [0, 1], robustness_rates=(0.3,)), store))
    assert list_experiments(store) == ["exp-v"]
    result = load_experiment(store, "exp-v")
    rows = experiment_rows(result)
    assert [r["variant"] for r in rows] == ["kd", "lrc"] and all(r["n"] == 2 for r in rows)
    lrc_scores = [store.get(f"exp-v-lrc-s{s}").summary["score"] for s in (0, 1)]
    assert rows[1]["scores"] == lrc_scores and rows[1]["mean"] == pytest.approx(sum(lrc_scores) / 2)
    with pytest.raises(Exception, match="invalid run id|no experiment"):
        load_experiment(store, "../exp-v")

    studio = Studio(AppContext(settings=AppSettings(runs_dir=str(store.root)), store=store,
                               jobs=JobManager(store, devices=["cpu"])))
    assert studio.experiment_choices()["choices"] == ["exp-v"]
    table, fig, note, pick = studio.experiment_view("exp-v")
    data = table["value"]["data"]
    assert [row[0] for row in data] == ["kd", "lrc", "teacher"] and data[1][3] == 2
    means = fig.data[-1]
    assert list(fig.layout.xaxis.ticktext) == ["kd", "lrc"] and list(means.y) == [r["mean"] for r in rows]
    assert list(means.error_y.array) == [r["std"] for r in rows]
    assert sorted(v for t in fig.data[:-1] for v in t.y) == sorted(v for r in rows for v in r["scores"])
    assert "Robustness" in note and "typo@0.3" in note
    assert pick["value"] == ["exp-v-kd-s0", "exp-v-lrc-s0"]
    api = studio.experiment_api("exp-v")
    assert api["rows"][0]["variant"] == "kd" and api["finished"]


def test_report_prints_an_experiments_tables(tmp_path, shared_glue_dir, tiny_teacher_dir, capsys):
    from lrc.cli import main

    cfg = tiny_config(data_dir=str(shared_glue_dir), teacher=str(tiny_teacher_dir), max_steps=2)
    store = RunStore(tmp_path / "runs")
    list(run_experiment(ExperimentSpec("exp-r", cfg, ["kd", "lrc"], [0], robustness_rates=()), store))
    assert main(["report", "--runs-dir", str(store.root)]) == 0
    out = capsys.readouterr().out
    assert "### exp-r (sst2, seeds [0]" in out and "| kd |" in out and "| lrc |" in out and "| teacher |" in out
    assert main(["report", "--runs-dir", str(tmp_path / "nowhere")]) == 2
    assert not (tmp_path / "nowhere").exists()
