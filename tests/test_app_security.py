"""The app under bad input and hostile users: every case gets a clear message, changes nothing, and the app goes on.

Callbacks are called directly (fake requests carry a Gradio session hash) on tiny random BERTs saved as run
folders; runs are queued on `tools.apptest.paced_runner`, which writes step events without using the CPU. The last
test launches the real server once (loopback) for what only HTTP shows: the upload limit and two real
`gradio_client` sessions.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

import gradio as gr
import pytest

from studio import guard, runs_view
from studio.jobs import JobManager
from studio.tabs.layers import compute_views
from studio.state import AppContext, AppSettings
from tools.apptest import make_tiny_teacher, paced_runner, write_preset, write_tiny_glue
from studio.form import FORM_FIELDS, PRESET_FIELDS, form_values
from studio.ui import Studio, build_app, launch_kwargs
from lrc.errors import LRCError, ModelLoadError
from lrc.models import validate_hub_id
from lrc.predict import MAX_CHARS, predict
from lrc.runs import RunStore

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("LRC_PACED_STEP_S", "0.02")


class FakeRequest:
    """What Gradio passes as `gr.Request`, as far as the app looks at it."""

    def __init__(self, session_hash: str):
        self.session_hash = session_hash


ALICE, BOB = FakeRequest("alice-session-1111"), FakeRequest("bob-session-2222")


def model_run(store: RunStore, run_id: str, task: str, teacher: str | None, kind: str = "distill",
              owner: str | None = None) -> Path:
    """A finished run folder with a tiny random model (student/, or model/ for a teacher run)."""
    run = store.create({"task": task, "max_seq_length": 32, "teacher": teacher}, run_id=run_id, kind=kind,
                       owner=owner, exist_ok=True)
    make_tiny_teacher(run.path / ("model" if kind == "teacher" else "student"), task=task, layers=2, hidden=32)
    run.set_status("completed")
    return run.path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("security")
    store = RunStore(root / "runs")
    outside = root / "outside"  # what no request may read: a model folder and a secret file
    outside_teacher = make_tiny_teacher(outside / "teacher", task="sst2", layers=2, hidden=32)
    (outside / "secret.txt").write_text("do not read me")
    teacher = model_run(store, "teacher-tiny", "sst2", None, kind="teacher")
    rte_teacher = model_run(store, "teacher-tiny-rte", "rte", None, kind="teacher")
    model_run(store, "sst-run", "sst2", str(teacher))
    model_run(store, "rte-run", "rte", str(rte_teacher))
    preset = write_preset(root / "tiny.yaml", max_train_examples=32, max_eval_examples=16, batch_size=8,
                          student={"layers": 1})
    return {"root": root, "store": store, "outside": outside, "outside_teacher": str(outside_teacher),
            "teacher": str(teacher), "preset": str(preset), "glue": str(write_tiny_glue(root / "glue"))}


@pytest.fixture
def make_studio(world):
    """Studios over the shared store, each with its own paced job queue (closed after the test)."""
    made = []

    def make(**settings) -> Studio:
        store = world["store"]
        jobs = JobManager(store, devices=["cpu"], runner=paced_runner)
        values = {"runs_dir": str(store.root), "data_dir": world["glue"], "preset": world["preset"], **settings}
        studio = Studio(AppContext(settings=AppSettings(**values), store=store, jobs=jobs))
        made.append(studio)
        return studio

    yield make
    for studio in made:
        studio.ctx.jobs.close()


@pytest.fixture
def studio(make_studio):
    return make_studio()


def form(world, **changes) -> list:
    values = {"task": "sst2", "teacher": "bundled", "preset": world["preset"], "run_name": ""}
    values.update({k: v for k, v in form_values(world["preset"]).items() if k in PRESET_FIELDS})
    values.update(changes)
    return {name: values[name] for name in FORM_FIELDS}


def run_ids(store: RunStore) -> set[str]:
    return {p.name for p in store.root.iterdir()}


def submit(studio: Studio, request, **kwargs) -> str:
    """Queue a paced run through the `distill` endpoint; returns its id once its folder exists."""
    stream = studio.distill(task="sst2", request=request, **kwargs)
    run_id = next(stream)["run_id"]
    stream.close()
    return run_id


def wait_status(store: RunStore, run_id: str, wanted: set[str], timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = store.get(run_id).status
        if status in wanted:
            return status
        time.sleep(0.02)
    raise AssertionError(f"{run_id} stayed {store.get(run_id).status}, wanted {wanted}")


# ==================================================================================== bad input in Predict

@pytest.mark.parametrize("text", ["", "   ", "\n\t ", "\u200b\u200f\u200e", "\x00\x01\x7f", None])
def test_predict_refuses_empty_or_invisible_text(studio, text):
    with pytest.raises(gr.Error, match="the text is empty.*type a sentence"):
        studio.predict("sst-run", text, "")
    assert studio.predict("sst-run", "still up", "")[3]["student"]["label"]  # the app goes on


def test_predict_truncates_a_50000_character_text_and_says_so(studio):
    text = ("a gorgeous, witty, seductive movie " * 1500)[:50_000]
    _t, _s, verdict, raw = studio.predict("sst-run", text, "")
    for side in ("student", "teacher"):
        assert raw[side]["truncated"] and raw[side]["num_tokens"] == 32  # the run's max_seq_length
    assert re.search(r"input truncated from \d{4,} to 32 tokens", verdict), verdict
    _t, _s, verdict, _raw = studio.predict("sst-run", "x " * (MAX_CHARS // 2 + 10), "")
    assert "cut to its first 100,000 characters" in verdict


@pytest.mark.parametrize("text", [
    "🎬🍿 loved it 😍👨‍👩‍👧", "\u202bفيلم رائع\u202c", "סרט \u200fנהדר", "good\x00movie\x07 with\x1b[31m codes",
    "mixed Ελληνικά русский 日本語 한국어 हिन्दी ok", "lone surrogate \ud800 here", "\U0001f600" * 300,
])
def test_predict_handles_emoji_rtl_control_and_mixed_scripts(studio, world, text):
    teacher_probs, student_probs, _verdict, raw = studio.predict("sst-run", text, "")
    assert set(student_probs) == {"negative", "positive"}
    assert math.isclose(sum(student_probs.values()), 1.0, abs_tol=1e-5)
    assert raw["student"]["label"] in student_probs and raw["teacher"]["label"] in teacher_probs


def test_control_characters_are_spaces_to_the_model(studio, world):
    run = world["store"].get("sst-run")
    with_controls = predict(str(run.path / "student"), "good\x00movie\x07", max_length=32)
    plain = predict(str(run.path / "student"), "good movie", max_length=32)
    assert with_controls.probabilities == pytest.approx(plain.probabilities, abs=1e-6)


@pytest.mark.parametrize("a, b", [("a man is eating", ""), ("a man is eating", None), ("a man", "\u200b "),
                                  ("", "a man is eating")])
def test_pair_task_with_one_side_missing(studio, a, b):
    with pytest.raises(gr.Error, match="empty"):
        studio.predict("rte-run", a, b)
    _t, student, _v, raw = studio.predict("rte-run", "a man is eating", "someone eats")
    assert set(student) == {"entailment", "not_entailment"} and raw["agree"] in (True, False)


# ==================================================================== bad knobs in the Distill form and API

BAD_KNOBS = [
    ("batch_size", 0, "batch_size must be an integer from 1"),
    ("batch_size", float("nan"), "batch_size must be a whole number"),
    ("lr", -1, "lr must be > 0"),
    ("lr", 0, "lr must be > 0"),
    ("lr", float("nan"), "lr must be a finite number"),
    ("temperature", 0, "temperature must be > 0"),
    ("temperature", float("inf"), "temperature must be a finite number"),
    ("epsilon", -0.5, "epsilon must be >= 0"),
    ("gamma", float("nan"), "gamma must be a finite number"),
    ("student_layers", 0, "student.layers must be an integer from 1"),
    ("student_heads", 7, "must be divisible by student.heads"),
    ("max_seq_length", 100_000, "max_seq_length must be an integer from 1 to 512"),
    ("epochs", 0, "epochs must be > 0"),
    ("stage1_fraction", 1.5, "stage1_fraction must be between 0 and 1"),
    ("num_negatives", 0, "num_negatives must be an integer from 1"),
    ("stage1_steps", -3, "steps must be >= 0"),
]


@pytest.mark.parametrize("route", ["form", "api"])
@pytest.mark.parametrize("field, value, message", BAD_KNOBS, ids=[f"{f}={v}" for f, v, _m in BAD_KNOBS])
def test_bad_knobs_are_refused_before_a_run_exists(studio, world, route, field, value, message):
    before = run_ids(world["store"])
    with pytest.raises(gr.Error, match=re.escape(message)):
        if route == "form":
            next(studio.distill_form(form(world, **{field: value}), request=ALICE))
        else:
            next(studio.distill(task="sst2", settings={field: value}, request=ALICE))
    assert run_ids(world["store"]) == before and studio.ctx.jobs.active() == []


@pytest.mark.parametrize("kwargs, message", [
    ({"settings": "lr=1"}, "settings must be a JSON object of knob: value"),
    ({"settings": [["lr", 1]]}, "settings must be a JSON object of knob: value"),
    ({"settings": {"perturb": "no"}}, "perturb must be true or false"),
    ({"settings": {"lr": "fast"}}, "lr must be a number"),
    ({"settings": {"data_dir": "/etc"}}, "not settable from the app: data_dir"),
    ({"task": ["sst2"]}, "unknown task"),
    ({"task": "imagenet"}, "unknown task 'imagenet'; choose one of"),
    ({"preset": 5}, "preset must be a preset's name"),
    ({"preset": "/etc/hostname"}, "unknown preset"),
    ({"teacher": 5}, "teacher must be text"),
    ({"run_name": 7}, "run_name must be text"),
], ids=lambda v: str(v)[:40])
def test_distill_api_refuses_wrong_shapes(studio, world, kwargs, message):
    before = run_ids(world["store"])
    with pytest.raises(gr.Error, match=re.escape(message)):
        next(studio.distill(**{"task": "sst2", **kwargs}, request=ALICE))
    assert run_ids(world["store"]) == before


def test_k_larger_than_the_data_allows(studio, world):
    before = run_ids(world["store"])
    with pytest.raises(gr.Error, match=r"num_negatives \(64\) must be smaller than the number of training examples"):
        next(studio.distill(task="sst2", settings={"negatives": "bank", "num_negatives": 64,
                                                   "max_train_examples": 32}, request=ALICE))
    assert run_ids(world["store"]) == before


def test_more_student_layers_than_the_teacher(studio, world):
    before = run_ids(world["store"])
    with pytest.raises(gr.Error, match="the student has 3 layers but teacher .*teacher-tiny has only 2; use at most 2"):
        next(studio.distill(task="sst2", teacher=world["teacher"], settings={"student_layers": 3}, request=ALICE))
    with pytest.raises(gr.Error, match="the bundled teacher has only 6; use at most 6 student layers"):
        next(studio.distill_form(form(world, student_layers=7, student_hidden=64, student_heads=2), request=ALICE))
    with pytest.raises(gr.Error, match=r"layer_map entries \[9\] are outside the teacher's layers 1..2"):
        next(studio.distill(task="sst2", teacher=world["teacher"],
                            settings={"student_layers": 2, "layer_map": [1, 9]}, request=ALICE))
    assert run_ids(world["store"]) == before


@pytest.mark.parametrize("teacher, message", [
    ("bert-base-uncasedd", "could not load model 'bert-base-uncasedd'.*check the id"),  # well formed, not there
    ("bert base uncased", "nor a valid hub id: use .name. or .owner/name."),
    ("google--bert/x", "nor a valid hub id: use .name. or .owner/name."),
    ("org/model.git", "nor a valid hub id: use .name. or .owner/name."),
    ("https://evil.example/x", "local path"),
])
def test_unknown_or_misspelled_hub_ids(studio, world, teacher, message):
    before = run_ids(world["store"])
    with pytest.raises(gr.Error, match=message):
        next(studio.distill(task="sst2", teacher=teacher, request=ALICE))
    assert run_ids(world["store"]) == before


def test_a_model_that_is_not_a_bert_like_encoder(studio, world):
    from transformers import GPT2Config

    store = world["store"]
    run = store.create({"task": "sst2", "max_seq_length": 32}, run_id="gpt-run", exist_ok=True)
    GPT2Config(n_layer=1, n_embd=8, n_head=2).save_pretrained(run.path / "student")
    run.set_status("completed")
    before = run_ids(store)
    with pytest.raises(gr.Error, match="is a 'gpt2' model; LRC needs a BERT-like encoder"):
        next(studio.distill(task="sst2", teacher=str(run.path), request=ALICE))
    assert run_ids(store) == before
    with pytest.raises(gr.Error, match="BERT-like encoder"):
        studio.predict("gpt-run", "a fine film", "")
    assert studio.predict("sst-run", "a fine film", "")[3]["student"]["label"]  # the app goes on


# ============================================================================================ paths

HOSTILE_IDS = ["../outside", "..", ".", "/etc/passwd", "outside/../../x", "runs/../../outside", "..%2fsecret",
               "a/b", "\\..\\outside", "name\x00.txt", 42, ["sst-run"]]


def _calls(studio: Studio, world) -> dict:
    """Every callback that takes a run id, as run_id -> call (each must refuse a bad id without reading it)."""
    store = world["store"]
    return {
        "watch": lambda rid: list(studio.watch(rid)),
        "watch_state": lambda rid: list(studio.watch_state(rid)),
        "stop": lambda rid: studio.stop(rid, request=ALICE),
        "delete": lambda rid: studio.delete(rid, request=ALICE),
        "predict": lambda rid: studio.predict(rid, "a fine film", ""),
        "disagreements": lambda rid: studio.disagreements(rid, 10),
        "download": lambda rid: studio.download(rid),
        "compare": lambda rid: studio.compare([rid], "loss"),
        "push": lambda rid: studio.push(rid, "me/model"),
        "layers": lambda rid: _layers_or_raise(store, rid),
    }


def _layers_or_raise(store, rid):
    *_figs, info = compute_views(store, rid, "trained", "cls", 8)
    if info.startswith("⚠️"):
        raise gr.Error(info)
    return info


@pytest.fixture
def planted(world):
    """A store planted (as if by someone with disk access) with links out: a run folder that is a symlink, and a
    run whose student/ and events.jsonl point outside. No endpoint may follow them."""
    store, outside = world["store"], world["outside"]
    (store.root / "link-out").symlink_to(outside, target_is_directory=True)
    (outside / "config.json").write_text('{"task": "sst2"}')
    run = store.create({"task": "sst2", "max_seq_length": 32}, run_id="inner-link", exist_ok=True)
    (run.path / "student").symlink_to(Path(world["outside_teacher"]), target_is_directory=True)
    run.set_status("completed")
    events = store.create({"task": "sst2"}, run_id="events-link", exist_ok=True)
    (events.path / "events.jsonl").symlink_to(outside / "secret.txt")
    events.set_status("completed")
    yield ["link-out", "inner-link", "events-link"]
    (store.root / "link-out").unlink()
    (outside / "config.json").unlink()
    store.delete("inner-link")
    store.delete("events-link")


@pytest.mark.parametrize("endpoint", ["watch", "watch_state", "stop", "delete", "predict", "disagreements",
                                      "download", "compare", "push", "layers"])
def test_run_ids_never_name_a_path_outside_the_store(make_studio, world, planted, endpoint):
    studio = make_studio(hub_token="hf_not_a_real_token_123")
    call = _calls(studio, world)[endpoint]
    outside = world["outside"]
    for rid in HOSTILE_IDS + planted:
        with pytest.raises(gr.Error) as info:
            call(rid)
        assert "do not read me" not in str(info.value)
    assert (outside / "secret.txt").read_text() == "do not read me"
    assert (Path(world["outside_teacher"]) / "config.json").exists()  # delete followed no link
    assert studio.predict("sst-run", "still up", "")[3]["student"]["label"]


def test_download_zips_only_the_runs_own_files(studio, world):
    import zipfile

    path = studio.download("sst-run")
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
    assert "config.json" in names and all(not n.startswith(("/", "..")) for n in names)


@pytest.mark.parametrize("name", ["../escape", "/tmp/abs-run", "a/b", "..", "x" * 200])
def test_run_names_cannot_name_a_path(studio, world, name):
    before = run_ids(world["store"])
    with pytest.raises(gr.Error, match="invalid run id"):
        next(studio.distill(task="sst2", run_name=name, request=ALICE))
    assert run_ids(world["store"]) == before and not Path("/tmp/abs-run").exists()


# ============================================================================== local model paths

def test_local_model_paths_are_off_unless_the_operator_allows_them(make_studio, world, monkeypatch):
    store = world["store"]
    studio = make_studio()
    for path in (world["outside_teacher"], str(world["outside"]), "/etc", "~", "../outside/teacher", "./x/y"):
        with pytest.raises(guard.AccessDenied, match="LRC_ALLOW_LOCAL_PATHS=1"):
            studio.build_config("sst2", world["preset"], path, {})
    with pytest.raises(gr.Error, match="local path .* is turned off"):  # what the API and the form say
        next(studio.distill(task="sst2", teacher=world["outside_teacher"], request=ALICE))
    # still usable: the bundled teacher, teacher runs of the store (what the form lists), a hub id's shape
    assert studio.build_config("sst2", world["preset"], "bundled", {})[0].teacher is None
    assert world["teacher"] in [v for _label, v in studio.teacher_choices("sst2")]
    assert studio.build_config("sst2", world["preset"], world["teacher"], {})[0].teacher == world["teacher"]
    assert guard.check_teacher("textattack/bert-base-uncased-SST-2", store, False) == \
        "textattack/bert-base-uncased-SST-2"
    # the operator's own teacher (--teacher / LRC_TEACHER) and, when allowed, any local folder
    local = world["outside_teacher"]
    operator = make_studio(teacher=local)
    assert operator.build_config("sst2", world["preset"], local, {})[0].teacher == local
    monkeypatch.setenv("LRC_ALLOW_LOCAL_PATHS", "1")
    allowed = make_studio(allow_local_paths=AppSettings.from_env().allow_local_paths)
    assert allowed.build_config("sst2", world["preset"], local, {})[0].teacher == local
    monkeypatch.setenv("LRC_ALLOW_LOCAL_PATHS", "0")
    assert AppSettings.from_env().allow_local_paths is False


def test_a_store_link_pointing_outside_is_not_a_store_teacher(studio, world, planted):
    with pytest.raises(guard.AccessDenied, match="LRC_ALLOW_LOCAL_PATHS=1"):
        studio.build_config("sst2", world["preset"], str(world["store"].root / "link-out"), {})
    with pytest.raises(guard.AccessDenied, match="links to files outside"):
        studio.build_config("sst2", world["preset"], str(world["store"].root / "inner-link"), {})


@pytest.mark.parametrize("good", ["bert-base-uncased", "google/bert_uncased_L-2_H-128_A-2", "org/model.v2",
                                  "a" * 96 + "/" + "b" * 96])
def test_hub_ids_pass_the_strict_pattern(good):
    assert validate_hub_id(good) == good


@pytest.mark.parametrize("bad", ["", "-x", "x-", "a--b", "a..b", "x.git", "a/b/c", "/abs", "a b", "a?rev=1",
                                 "a#b", "https://x.co/a", "a" * 97, "org/", "é-model", "a\nb"])
def test_hub_ids_failing_the_strict_pattern(bad):
    with pytest.raises(ModelLoadError, match="valid hub id"):
        validate_hub_id(bad)


def test_trust_remote_code_is_never_true(tiny_teacher_dir, monkeypatch):
    """By source (no `trust_remote_code=<anything but False>` in the project's code) and by behaviour (every
    loader call made while loading a model for inference passes False explicitly)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    from lrc.models import load_for_inference

    offenders = []
    for path in [ROOT / "app.py", *sorted((ROOT / "lrc").rglob("*.py")), *sorted((ROOT / "studio").rglob("*.py")),
                 *sorted((ROOT / "bench").rglob("*.py"))]:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if re.search(r"trust_remote_code\s*[=:]\s*(?!False\b)", line) or "trust_remote_code\":" in line:
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []
    calls = []
    for cls in (AutoConfig, AutoModelForSequenceClassification, AutoTokenizer):
        original = cls.from_pretrained

        def spy(*args, _original=original, _name=cls.__name__, **kwargs):
            calls.append((_name, kwargs.get("trust_remote_code", "unset")))
            return _original(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", spy)
    load_for_inference(str(tiny_teacher_dir))
    assert {name for name, _v in calls} == {"AutoConfig", "AutoModelForSequenceClassification", "AutoTokenizer"}
    assert all(value is False for _name, value in calls), calls


# ================================================================================== the hub token

TOKEN = "hf_TESTsecretTOKEN0123456789abcdef"


def test_hub_token_is_never_stored_in_a_run_or_shown(tmp_path, world, monkeypatch):
    """A real tiny distillation (lrc's pipeline) and a push with HF_TOKEN set: the token is in no file of the run
    folder, no streamed state, no message (not even an error from the hub that quotes it), not the page config."""
    import huggingface_hub

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    teacher = make_tiny_teacher(tmp_path / "teacher")
    preset = write_preset(tmp_path / "tiny.yaml", max_train_examples=32, max_eval_examples=16, batch_size=16,
                          epochs=1, student={"layers": 1})
    settings = AppSettings.from_env(runs_dir=str(tmp_path / "runs"), data_dir=world["glue"], preset=str(preset),
                                    teacher=str(teacher))
    assert settings.hub_token == TOKEN and TOKEN not in repr(settings)
    ctx = AppContext.create(settings)
    studio = Studio(ctx)
    try:
        states = list(studio.distill(task="sst2", run_name="token-run", request=ALICE))
    finally:
        ctx.jobs.close()
    assert states[-1]["status"] == "completed", states[-1]["message"]

    pushed = []

    class FakeApi:
        def __init__(self, token=None):
            self.token = token

        def create_repo(self, repo_id, **_kw):
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, folder_path, repo_id, **_kw):
            if repo_id == "me/fails":
                raise RuntimeError(f"401 Unauthorized: token {self.token} is not valid for {repo_id}")
            pushed.append((self.token, folder_path))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    texts = [json.dumps(states), studio.push("token-run", "me/works"), json.dumps(studio.runs()),
             json.dumps(build_app(ctx).config, default=str)]
    with pytest.raises(gr.Error) as failed:
        studio.push("token-run", "me/fails")
    texts.append(str(failed.value))
    assert pushed and pushed[0][0] == TOKEN  # the operator's token did reach the hub client
    assert "Pushed to" in texts[1] and "401 Unauthorized: token *** is not valid" in texts[-1]
    for text in texts:
        assert TOKEN not in text
    files = [p for p in (tmp_path / "runs").rglob("*") if p.is_file()]
    assert any(p.name == "model.safetensors" for p in files)
    for path in files:
        assert TOKEN.encode() not in path.read_bytes(), path


# ==================================================================================== uploads

def test_upload_limit_comes_from_the_operator(monkeypatch):
    assert launch_kwargs(AppSettings())["max_file_size"] == "20mb"  # the default
    monkeypatch.setenv("LRC_MAX_UPLOAD_MB", "3")
    assert launch_kwargs(AppSettings.from_env())["max_file_size"] == "3mb"
    for bad in ("0", "-5", "lots", "1.5"):
        monkeypatch.setenv("LRC_MAX_UPLOAD_MB", bad)
        with pytest.raises(LRCError, match="LRC_MAX_UPLOAD_MB must be a whole number >= 1.*unset it"):
            AppSettings.from_env()



def test_layers_cache_budget_comes_from_the_operator(monkeypatch):
    monkeypatch.delenv("LRC_LAYERS_CACHE_MB", raising=False)
    assert AppSettings.from_env().layers_cache_mb == 1024
    for good, mb in (("0", 0), ("300", 300)):  # 0: only the sample shown is kept
        monkeypatch.setenv("LRC_LAYERS_CACHE_MB", good)
        assert AppSettings.from_env().layers_cache_mb == mb
    for bad in ("-1", "lots", "0.5"):
        monkeypatch.setenv("LRC_LAYERS_CACHE_MB", bad)
        with pytest.raises(LRCError, match="LRC_LAYERS_CACHE_MB must be a whole number >= 0.*unset it"):
            AppSettings.from_env()

# ====================================================================================== owners

def test_only_the_owner_can_stop_or_delete_a_run(make_studio, world, monkeypatch):
    store = world["store"]
    studio = make_studio()
    run_id = submit(studio, ALICE, settings={"stage1_steps": 2000})
    assert store.get(run_id).meta["owner"] == ALICE.session_hash
    wait_status(store, run_id, {"running"})
    for action in (lambda: studio.stop(run_id, request=BOB), lambda: studio.delete(run_id, request=BOB)):
        with pytest.raises(gr.Error, match="started by another user; only the session that started it.*"
                                           "LRC_ALLOW_FOREIGN_STOP=1"):
            action()
    assert store.get(run_id).status == "running"
    with pytest.raises(gr.Error, match="is running; stop it first"):
        studio.delete(run_id, request=ALICE)
    assert "Stopping" in studio.stop(run_id, request=ALICE)
    assert studio.ctx.jobs.wait(run_id, timeout=10) and store.get(run_id).status == "stopped"
    with pytest.raises(gr.Error, match="another user"):
        studio.delete(run_id, request=BOB)
    # the runs list never shows an owner's session hash (whoever knows it could pass as that session)
    assert ALICE.session_hash not in json.dumps(studio.runs())
    assert studio.delete(run_id, request=ALICE) == f"Deleted {run_id}."
    assert not (store.root / run_id).exists()


def test_runs_started_outside_the_app_belong_to_the_operator(make_studio, world):
    with pytest.raises(gr.Error, match="started by the operator"):
        make_studio().delete("sst-run", request=BOB)
    assert (world["store"].root / "sst-run" / "student" / "config.json").exists()


def test_the_operator_can_allow_foreign_stops(make_studio, world, monkeypatch):
    monkeypatch.setenv("LRC_ALLOW_FOREIGN_STOP", "1")
    studio = make_studio(allow_foreign_stop=AppSettings.from_env().allow_foreign_stop)
    run_id = submit(studio, ALICE, settings={"stage1_steps": 2000})
    wait_status(world["store"], run_id, {"running"})
    assert "Stopping" in studio.stop(run_id, request=BOB)
    assert studio.ctx.jobs.wait(run_id, timeout=10)
    assert studio.delete(run_id, request=BOB) == f"Deleted {run_id}."


# ======================================================================= the same over HTTP, one server

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tools.apptest import AppProcess

    tmp = tmp_path_factory.mktemp("security-http")
    store = RunStore(tmp / "runs")
    teacher = model_run(store, "teacher-tiny", "sst2", None, kind="teacher")
    model_run(store, "sst-run", "sst2", str(teacher))
    preset = write_preset(tmp / "tiny.yaml")
    with AppProcess(store.root, preset=preset, paced_step_s=0.02,
                    env={"LRC_MAX_UPLOAD_MB": "1", "HF_TOKEN": TOKEN}) as app:
        yield app


def test_http_upload_limit_owners_and_hostile_ids(server):
    import urllib.error
    import urllib.request
    import uuid

    from gradio_client import Client
    from gradio_client.exceptions import AppError

    def upload(size: int) -> tuple[int, str]:
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"data.csv\"\r\n"
                f"Content-Type: text/csv\r\n\r\n").encode() + b"x" * size + f"\r\n--{boundary}--\r\n".encode()
        req = urllib.request.Request(server.url + "gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode()

    assert upload(100_000)[0] == 200
    code, text = upload(2 * 1024 * 1024)
    assert code == 413 and "maximum allowed size of 1048576 bytes" in text

    alice, bob = Client(server.url, verbose=False), Client(server.url, verbose=False)
    job = alice.submit(task="sst2", settings={"stage1_steps": 2000}, api_name="/distill")
    deadline = time.monotonic() + 120  # generous: a loaded 2-core machine takes long to start a run
    while not job.outputs() and time.monotonic() < deadline:
        time.sleep(0.1)
    run_id = job.outputs()[0]["run_id"]
    with pytest.raises(AppError, match="started by another user"):
        bob.predict(run_id, api_name="/stop")
    for rid in ("../outside", "/etc/passwd", "..", "a/../../b"):
        for api, args in (("/download", (rid,)), ("/predict", (rid, "text", "")), ("/stop", (rid,)),
                          ("/delete", (rid,))):
            with pytest.raises(AppError, match="invalid run id|no run"):
                bob.predict(*args, api_name=api)
    with pytest.raises(AppError, match="LRC_ALLOW_LOCAL_PATHS=1"):
        bob.predict(task="sst2", teacher="/etc", api_name="/distill")
    assert "Stopping" in alice.predict(run_id, api_name="/stop")
    assert job.result(timeout=30)["status"] == "stopped"
    runs = bob.predict(api_name="/runs")  # the app is still up, and shows no owner or token
    assert {r["run"] for r in runs} >= {run_id, "sst-run"}
    assert TOKEN not in json.dumps(runs) and alice.session_hash not in json.dumps(runs)


def test_a_reload_keeps_the_right_to_stop_through_the_browser_key(make_studio, world):
    """The page keeps a random owner key in localStorage; a reload is a new Gradio session but the same key."""
    from studio import guard

    studio, store = make_studio(), world["store"]
    key = guard.new_owner_key("")
    assert guard.new_owner_key(key) == key and len(key) == 32 and guard.new_owner_key("forged") != "forged"
    before_reload, after_reload = FakeRequest("tab-session-1"), FakeRequest("tab-session-2")
    run_id = next(studio.distill_form(form(world, stage1_steps=2000), key, request=before_reload))[0]
    assert store.get(run_id).meta["owner"] == "browser-" + key
    wait_status(store, run_id, {"running"})
    with pytest.raises(gr.Error, match="another user"):
        studio.stop(run_id, "", request=after_reload)  # the new session alone is not the owner
    with pytest.raises(gr.Error, match="another user"):
        studio.stop(run_id, guard.new_owner_key(""), request=after_reload)  # nor is another browser's key
    assert "Stopping" in studio.stop(run_id, key, request=after_reload)
    assert studio.ctx.jobs.wait(run_id, timeout=10) and store.get(run_id).status == "stopped"
