"""The Distill form, built from the knob schema: one widget per knob whose field says `app="form"`.

Nothing here lists knobs by hand: the widgets, their labels, help, ranges and groups, the preset's values and the
order the form's values travel in all come from `lrc.knobs`. The only fields the form adds of its own are what is
not a setting of the run: the task, the teacher and the preset at the top, the stage-1/stage-2 step counts (a
friendlier way to set `max_steps` and `stage1_fraction`) and the run's name.
"""

from __future__ import annotations

from typing import Any

import gradio as gr

from lrc.config import DistillConfig, load_preset
from lrc.errors import LRCError
from lrc.knobs import GROUPS, Knob, knob_map, knobs

FORM_KNOBS: tuple[Knob, ...] = tuple(k for k in knobs(DistillConfig) if k.info.app == "form")
# what the API's `settings` may set: every knob the app shows, on the form or through the API only
API_KNOBS: dict[str, Knob] = {k.name: k for k in knobs(DistillConfig) if k.info.app in ("form", "api")}
STEP_FIELDS = ("stage1_steps", "stage2_steps")
# the order the Distill button sends the form in: what to distil, then the knobs, then the run's name
FORM_FIELDS: tuple[str, ...] = ("task", "teacher", "preset", *(k.name for k in FORM_KNOBS), *STEP_FIELDS,
                                "run_name")
# what choosing a preset fills in: every knob of the form and the step counts
PRESET_FIELDS: tuple[str, ...] = (*(k.name for k in FORM_KNOBS), *STEP_FIELDS)
SETTABLE: frozenset[str] = frozenset({*API_KNOBS, *STEP_FIELDS})

EXTRA_HELP = {
    "task": "GLUE task to distil on (data from the local GLUE folder, else the Hugging Face hub).",
    "teacher": "A finished teacher run, a hub id (bert-base-uncased-finetuned-…), a local model folder, or the "
               "bundled MiniLM (fine-tuned on the task first, then cached).",
    "preset": "Fills every knob below.",
    "stage1_steps": "Steps of stage 1 (COS-NCE only). 0 and 0: use the epochs and the stage-1 share instead.",
    "stage2_steps": "Steps of stage 2 (COS-NCE + soft + hard labels).",
    "run_name": "Optional run id (letters, digits, . _ -); empty = lrc-<task>-<time>.",
}


def form_values(preset: str | None) -> dict[str, Any]:
    """The form's values for a preset: the preset's keys over DistillConfig's defaults (the paper's)."""
    cfg = DistillConfig.from_dict(load_preset(preset)) if preset else DistillConfig()
    flat = cfg.flat()
    values = {k.name: flat[k.name] for k in FORM_KNOBS}
    if values.get("student_init") == "checkpoint":  # the form has no checkpoint box
        values["student_init"] = "auto"
    values.update({name: 0 for name in STEP_FIELDS}, task=cfg.task)
    return values


def settings_from_values(values: dict[str, Any]) -> dict[str, Any]:
    """The knobs and step counts of a filled-in form, by name (what `build_config` takes as `settings`)."""
    return {name: values.get(name) for name in PRESET_FIELDS}


def coerce_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """API or form values in each knob's own type; refuses unknown keys and switches that are not true/false."""
    unknown = sorted(str(k) for k in settings if k not in SETTABLE)
    if unknown:
        raise LRCError(f"unknown or not settable from the app: {', '.join(unknown)}; "
                       f"settable: {', '.join(sorted(SETTABLE))}")
    out: dict[str, Any] = {}
    for name, value in settings.items():
        if name in STEP_FIELDS:
            out[name] = whole_number(name, value or 0)
            continue
        k = API_KNOBS[name]
        if value is None:
            continue
        if k.kind == "bool" and not isinstance(value, bool):  # JSON "yes" would read as true otherwise
            raise LRCError(f"{name} must be true or false; got {value!r}")
        value = k.coerce(value)
        k.check(value)
        out[name] = value
    return out


def whole_number(name: str, value: Any) -> int:
    try:
        as_float = float(value)
    except (TypeError, ValueError):
        raise LRCError(f"{name.replace('_', ' ')} must be a whole number; got {value!r}") from None
    if isinstance(value, bool) or not as_float.is_integer():
        raise LRCError(f"{name.replace('_', ' ')} must be a whole number; got {value!r}")
    return int(as_float)


def widget(k: Knob, value: Any) -> gr.components.Component:
    """The knob's widget: its label, help, range and step from the schema."""
    common = {"label": k.label, "info": k.info.help, "elem_id": f"lrc-{k.name.replace('_', '-')}"}
    kind = k.widget
    if kind == "checkbox":
        return gr.Checkbox(bool(value), **common)
    if kind in ("radio", "dropdown"):
        choices = [c for c in k.choices if not (k.name == "student_init" and c == "checkpoint")]
        return (gr.Radio if kind == "radio" else gr.Dropdown)(choices, value=value, **common)
    if kind == "slider":
        low = k.info.ge if k.info.ge is not None else (k.info.gt or 0)
        high = k.info.le if k.info.le is not None else (k.info.lt or 1)
        return gr.Slider(low, high, value, step=k.info.step or 0.05, **common)
    if kind == "text":
        return gr.Textbox("" if value is None else str(value), **common)
    minimum = k.info.ge if k.info.ge is not None else k.info.gt
    return gr.Number(value, precision=0 if k.kind == "int" else None, minimum=minimum, maximum=k.info.le,
                     step=k.info.step or (1 if k.kind == "int" else None), **common)


def build_knob_widgets(values: dict[str, Any]) -> dict[str, gr.components.Component]:
    """Every form knob's widget, in accordions by group (student shape, schedule, loss, ...), in schema order;
    the stage step counts sit with the schedule. Call inside a gr.Column."""
    c: dict[str, gr.components.Component] = {}
    by_group: dict[str, list[Knob]] = {}
    for k in FORM_KNOBS:
        by_group.setdefault(k.info.group, []).append(k)
    open_groups = {"schedule", "loss", "perturbation"}
    for group, title in GROUPS.items():
        members = by_group.get(group, [])
        if not members and group != "schedule":
            continue
        with gr.Accordion(title, open=group in open_groups):
            if group == "schedule":
                with gr.Row():
                    for name in STEP_FIELDS:
                        c[name] = gr.Number(0, label=name.replace("_", "-").capitalize().replace("-", " "),
                                            info=EXTRA_HELP[name], precision=0, minimum=0, elem_id=f"lrc-{name}")
            for row in _rows(members):
                with gr.Row():
                    for k in row:
                        c[k.name] = widget(k, values[k.name])
    return c


def _rows(members: list[Knob], per_row: int = 3) -> list[list[Knob]]:
    """Short widgets side by side, radios and sliders on rows of their own."""
    rows: list[list[Knob]] = []
    current: list[Knob] = []
    for k in members:
        if k.widget in ("radio", "slider"):
            if current:
                rows.append(current)
                current = []
            rows.append([k])
            continue
        current.append(k)
        if len(current) == per_row:
            rows.append(current)
            current = []
    if current:
        rows.append(current)
    return rows


def knob(name: str) -> Knob:
    return knob_map(DistillConfig)[name]
