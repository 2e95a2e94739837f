"""One schema for every knob: a config field carries its own help, range, choices, group and widget.

A knob is a dataclass field made with `knob(...)`. Everything else that needs to know about knobs loops over
`knobs(DistillConfig)` instead of keeping its own list: `DistillConfig.validate()` checks each value against its
field, `lrc.cli` builds one flag per knob, the app builds its Distill form and its API's settable keys, and
`python -m lrc knobs` writes the table in docs/KNOBS.md. Adding a knob is adding one field.

Choices come from the field's `Literal[...]` type, so the type checker, the validator, the CLI's `choices=`
and the app's radio buttons read the same tuple. Nested dataclasses (the student's shape) are flattened as
`student_layers`, `student_hidden`, ... for flags, form fields and API keys, and named `student.layers` in
messages.

Modelled on pydantic's `Field(description=, ge=, le=)` and simple-parsing's metadata, without either
dependency: plain dataclasses stay picklable, comparable and JSON-friendly.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Union

from .errors import ConfigError

# where a knob shows in the app: on the Distill form, only through the API's `settings`, or not at all
AppVisibility = Literal["form", "api", "none"]
Widget = Literal["auto", "number", "slider", "checkbox", "radio", "dropdown", "text"]
_META_KEY = "lrc"

# the order groups appear in on the form, in --help and in the docs table
GROUPS: dict[str, str] = {
    "task": "What to distil",
    "teacher": "Teacher",
    "student": "Student",
    "loss": "Loss",
    "schedule": "Schedule",
    "perturbation": "Gradient perturbation",
    "transfer": "Transfer set",
    "data": "Data",
    "running": "Running",
    "speed": "Speed",
}


@dataclass(frozen=True)
class KnobInfo:
    """What a knob says about itself (everything but its name, type and default)."""

    help: str
    group: str
    label: str | None = None
    ge: float | None = None  # inclusive minimum
    gt: float | None = None  # exclusive minimum
    le: float | None = None  # inclusive maximum
    lt: float | None = None  # exclusive maximum
    app: AppVisibility = "form"
    widget: Widget = "auto"
    step: float | None = None  # the form's step for numbers and sliders
    flag: str | None = None  # CLI flag without dashes (default: the knob's name with '-')
    off_flag: str | None = None  # a bool's "off" flag (default: no-<flag>)
    eval_flag: bool = False  # also a flag of `lrc eval` (data and device settings)
    units: str | None = None  # said after the value in the docs ("steps", "tokens")


def knob(default: Any = dataclasses.MISSING, *, help: str, group: str, default_factory: Any = dataclasses.MISSING,
         **info: Any) -> Any:
    """A dataclass field with its knob metadata (see KnobInfo for the keyword arguments)."""
    if group not in GROUPS:
        raise ValueError(f"unknown knob group {group!r}")
    meta = {_META_KEY: KnobInfo(help=help, group=group, **info)}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Knob:
    """One settable value, flattened: `student_layers` lives at `student.layers`."""

    name: str  # flat name: CLI dest, form field, API key
    path: tuple[str, ...]  # attribute path in the config
    type: Any  # the resolved annotation
    default: Any
    info: KnobInfo

    @property
    def dotted(self) -> str:
        """How messages name it: `lr`, `student.layers`."""
        return ".".join(self.path)

    @property
    def optional(self) -> bool:
        return _is_optional(self.type)

    @property
    def base(self) -> Any:
        """The type without `| None`."""
        return _strip_none(self.type)

    @property
    def choices(self) -> tuple[Any, ...] | None:
        base = self.base
        return tuple(typing.get_args(base)) if typing.get_origin(base) is Literal else None

    @property
    def kind(self) -> str:
        """bool | int | float | str | choice | int_list"""
        base = self.base
        if self.choices is not None:
            return "choice"
        if base is bool:
            return "bool"
        if base is int:
            return "int"
        if base is float:
            return "float"
        if typing.get_origin(base) is list:
            return "int_list"
        return "str"

    @property
    def label(self) -> str:
        return self.info.label or self.name.replace("_", " ").capitalize()

    @property
    def flag(self) -> str:
        return "--" + (self.info.flag or self.name.replace("_", "-"))

    @property
    def off_flag(self) -> str:
        return "--" + (self.info.off_flag or "no-" + (self.info.flag or self.name.replace("_", "-")))

    @property
    def widget(self) -> str:
        if self.info.widget != "auto":
            return self.info.widget
        return {"bool": "checkbox", "choice": "radio", "int": "number", "float": "number"}.get(self.kind, "text")

    def range_text(self) -> str:
        """The valid values in words, for messages ("batch_size must be <this>; got 0"), --help and the docs."""
        if self.kind == "choice":
            return ", ".join(str(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.kind not in ("int", "float"):
            return ""
        info = self.info
        if self.kind == "int":
            low = info.ge if info.ge is not None else (info.gt + 1 if info.gt is not None else None)
            if low is not None and info.le is not None:
                return f"an integer from {_g(low)} to {_g(info.le)}"
            return f"an integer >= {_g(low)}" if low is not None else "an integer"
        if info.ge == 0 and info.le == 1:
            return "between 0 and 1"
        low = f"> {_g(info.gt)}" if info.gt is not None else (f">= {_g(info.ge)}" if info.ge is not None else "")
        high = f"< {_g(info.lt)}" if info.lt is not None else (f"at most {_g(info.le)}" if info.le is not None else "")
        return " and ".join(x for x in (low, high) if x)

    # ---- checking and converting ------------------------------------------------------------------------------
    def check(self, value: Any) -> None:
        """Raise one ConfigError naming the knob, the bad value and what is allowed."""
        name = self.dotted
        if value is None:
            if self.optional:
                return
            raise ConfigError(f"{name} must be set; got None")
        kind = self.kind
        if kind == "choice":
            if value not in self.choices:
                raise ConfigError(f"{name} must be one of {', '.join(map(str, self.choices))}; got {value!r}")
            return
        if kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(f"{name} must be true or false; got {value!r}")
            return
        if kind == "str":
            if not isinstance(value, str):
                raise ConfigError(f"{name} must be text; got {value!r}")
            return
        if kind == "int_list":
            if not isinstance(value, list) or any(isinstance(x, bool) or not isinstance(x, int) for x in value):
                raise ConfigError(f"{name} must be a list of whole numbers; got {value!r}")
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a {'whole number' if kind == 'int' else 'number'}; got {value!r}")
        if kind == "int" and not isinstance(value, int):
            raise ConfigError(f"{name} must be a whole number; got {value!r}")
        if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
            raise ConfigError(f"{name} must be a finite number; got {value!r}")
        info = self.info
        too_low = (info.gt is not None and value <= info.gt) or (info.ge is not None and value < info.ge)
        too_high = (info.le is not None and value > info.le) or (info.lt is not None and value >= info.lt)
        if too_low or too_high:
            raise ConfigError(f"{name} must be {self.range_text()}; got {value!r}")

    def coerce(self, value: Any) -> Any:
        """A value from a form, JSON or the command line in the knob's own type (whole floats to ints, numeric
        text to numbers, "2,4,6" to a list); anything else is left for `check` to refuse with a message."""
        if value is None or (isinstance(value, str) and not value.strip() and self.kind != "str"):
            return None if self.optional else value
        kind = self.kind
        if kind == "int" and not isinstance(value, bool):
            number = _to_number(value)
            if isinstance(number, float) and number.is_integer():
                return int(number)
            return number
        if kind == "float" and not isinstance(value, bool):
            number = _to_number(value)
            return float(number) if isinstance(number, (int, float)) else number
        if kind == "bool" and isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        if kind == "int_list" and isinstance(value, str):
            try:
                return [int(x) for x in value.replace(" ", "").split(",") if x]
            except ValueError:
                raise ConfigError(f"{self.dotted} must be comma-separated whole numbers, like 2,4,6; "
                                  f"got {value!r}") from None
        if kind == "int_list" and isinstance(value, (list, tuple)):
            return [self._whole_item(x) for x in value]
        return value

    def _whole_item(self, x: Any) -> Any:
        if isinstance(x, float) and x.is_integer():
            return int(x)
        return x

    def get(self, cfg: Any) -> Any:
        for part in self.path:
            cfg = getattr(cfg, part)
        return cfg


def _to_number(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return float(value) if any(c in value.lower() for c in ".en") else int(value)
        except ValueError:
            return value
    return value


def _g(x: float) -> str:
    return str(int(x)) if float(x).is_integer() and abs(x) < 1e15 else f"{x:g}"


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType) and type(None) in typing.get_args(tp)


def _strip_none(tp: Any) -> Any:
    if not _is_optional(tp):
        return tp
    rest = [a for a in typing.get_args(tp) if a is not type(None)]
    return rest[0] if len(rest) == 1 else Union[tuple(rest)]


@cache
def knobs(cls: type) -> tuple[Knob, ...]:
    """Every knob of a config class in field order, nested dataclasses flattened (`student_layers`)."""
    hints = typing.get_type_hints(cls)
    out: list[Knob] = []
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            for inner in knobs(tp):
                out.append(Knob(f"{f.name}_{inner.name}", (f.name, *inner.path), inner.type, inner.default,
                                inner.info))
            continue
        info = f.metadata.get(_META_KEY)
        if info is None:
            raise TypeError(f"{cls.__name__}.{f.name} is not a knob: define it with lrc.knobs.knob(...)")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out.append(Knob(f.name, (f.name,), tp, default, info))
    return tuple(out)


def knob_map(cls: type) -> dict[str, Knob]:
    return {k.name: k for k in knobs(cls)}


def check_all(cfg: Any) -> None:
    """Each value against its own knob (the config class adds the checks that involve several knobs)."""
    for k in knobs(type(cfg)):
        k.check(k.get(cfg))


def flatten(cfg: Any) -> dict[str, Any]:
    """{flat name: value} for every knob of a config."""
    return {k.name: k.get(cfg) for k in knobs(type(cfg))}


def markdown_table(cls: type) -> str:
    """The knobs table of docs/KNOBS.md: flag, default, valid values, where it shows, what it does."""
    lines = []
    by_group: dict[str, list[Knob]] = {}
    for k in knobs(cls):
        by_group.setdefault(k.info.group, []).append(k)
    for group, title in GROUPS.items():
        if group not in by_group:
            continue
        lines += [f"### {title}", "", "| knob | CLI flag | default | values | app | what it does |",
                  "|---|---|---|---|---|---|"]
        for k in by_group[group]:
            flag = f"`{k.flag}` / `{k.off_flag}`" if k.kind == "bool" else f"`{k.flag}`"
            default = "none" if k.default is None else f"`{k.default}`"
            where = {"form": "form", "api": "API", "none": "-"}[k.info.app]
            text = k.info.help.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{k.name}` | {flag} | {default} | {k.range_text() or 'text'} | {where} | {text} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
