"""Plotly figures from run events: live loss curves of one run, and overlays of several runs.

Only display logic lives here: events (see `lrc.train`) are sorted into series, and series into figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import plotly.graph_objects as go
from plotly.subplots import make_subplots

# the loss terms a step event can carry, in legend order
TERMS: tuple[tuple[str, str], ...] = (
    ("loss", "total"), ("cos_nce", "COS-NCE"), ("soft", "soft (KL)"), ("hard", "hard (CE)"),
)
TERM_NAMES = dict(TERMS)
# a regression task (STS-B, a user's scores) has one output: both label losses are then MSE, not KL / CE
REGRESSION_METRICS = frozenset({"pearson", "spearman"})
REGRESSION_TERM_NAMES = {"soft": "soft (MSE)", "hard": "hard (MSE)"}


def term_name(term: str, metric: str | None = None) -> str:
    """The legend name of a loss term, saying MSE where the task is a regression."""
    if metric in REGRESSION_METRICS and term in REGRESSION_TERM_NAMES:
        return REGRESSION_TERM_NAMES[term]
    return TERM_NAMES.get(term, term)
PALETTE = ("#4f46e5", "#16a34a", "#ea580c", "#db2777", "#0891b2", "#ca8a04", "#7c3aed", "#dc2626", "#475569")
TERM_COLORS = {"loss": "#111827", "cos_nce": "#4f46e5", "soft": "#16a34a", "hard": "#ea580c"}


@dataclass
class Curves:
    """Everything a run's events say, sorted for display. Feed it events in order with `add`."""

    series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    evals: list[dict[str, Any]] = field(default_factory=list)
    stage2_at: int | None = None
    start: dict[str, Any] | None = None
    last_step: dict[str, Any] | None = None
    end: dict[str, Any] | None = None
    teacher_start: dict[str, Any] | None = None
    teacher_step: dict[str, Any] | None = None
    teacher_ready: dict[str, Any] | None = None
    snapshots: int = 0
    count: int = 0  # events seen, i.e. the line to read from next

    def add(self, events: Iterable[dict[str, Any]]) -> "Curves":
        for e in events:
            self.count += 1
            kind = e.get("type")
            if e.get("phase") == "teacher":
                if kind == "start":
                    self.teacher_start = e
                elif kind == "step":
                    self.teacher_step = e
                continue
            if kind == "teacher_ready":
                self.teacher_ready = e
            elif kind == "start":
                self.start = e
            elif kind == "step":
                self.last_step = e
                for key, _name in TERMS:
                    value = e.get(key)
                    if isinstance(value, (int, float)):
                        self.series.setdefault(key, []).append((int(e["step"]), float(value)))
            elif kind == "stage":
                self.stage2_at = int(e.get("step", 0))
            elif kind == "eval":
                self.evals.append(e)
            elif kind == "end":
                self.end = e
            elif kind == "snapshot":
                self.snapshots += 1
            elif kind == "resume":  # a watcher that saw the run before it was resumed: drop what was superseded
                at = int(e.get("step", 0))
                self.series = {k: [(s, v) for s, v in pts if s <= at] for k, pts in self.series.items()}
                self.evals = [x for x in self.evals if int(x.get("step", 0)) <= at]
                self.end = None
        return self

    @property
    def total_steps(self) -> int | None:
        if self.start and self.start.get("total_steps"):
            return int(self.start["total_steps"])
        return None

    @property
    def step(self) -> int:
        return int(self.last_step["step"]) if self.last_step else 0

    def eval_points(self, metric: str) -> dict[str, list[tuple[int, float]]]:
        """Dev metric per split: {split: [(step, value), ...]}."""
        out: dict[str, list[tuple[int, float]]] = {}
        for e in self.evals:
            value = (e.get("metrics") or {}).get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                out.setdefault(e.get("split", "dev"), []).append((int(e.get("step", 0)), float(value)))
        return out

    def latest_metrics(self) -> dict[str, dict[str, float]]:
        latest: dict[str, dict[str, float]] = {}
        for e in self.evals:
            latest[e.get("split", "dev")] = e.get("metrics") or {}
        return latest


def curves_of(events: Iterable[dict[str, Any]]) -> Curves:
    return Curves().add(events)


def _base(title: str, metric: str | None) -> go.Figure:
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.update_layout(
        title={"text": title, "font": {"size": 14}}, height=400, template="plotly_white",
        margin={"l": 50, "r": 50, "t": 50, "b": 40}, uirevision="keep",
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1.0},
        hovermode="x unified",
    )
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="loss", secondary_y=False)
    if metric:
        bounded = metric in ("accuracy", "f1", "macro_f1")
        fig.update_yaxes(title_text=f"dev {metric}", secondary_y=True, showgrid=False,
                         **({"range": [0, 1.02]} if bounded else {}))
    return fig


def _waiting(fig: go.Figure, text: str) -> go.Figure:
    fig.add_annotation(text=text, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5,
                       font={"size": 14, "color": "#6b7280"})
    return fig


def loss_figure(curves: Curves | None, metric: str | None = "accuracy", title: str = "") -> go.Figure:
    """Total loss and each term against steps, the stage boundary, and dev metrics as points."""
    fig = _base(title, metric)
    if curves is None or not curves.series:
        text = "no run yet: press Distill"
        if curves is not None and curves.teacher_step:
            t = curves.teacher_step
            text = f"fine-tuning the teacher first: step {t.get('step')}/{t.get('total_steps')}"
        elif curves is not None and curves.start:
            text = "training: the first loss point lands after the first step"
        elif curves is not None and curves.count:
            text = "loading data and models"
        return _waiting(fig, text)
    many = max(len(v) for v in curves.series.values()) > 40
    for key, _name in TERMS:
        points = curves.series.get(key)
        if not points:
            continue
        xs, ys = zip(*points)
        fig.add_trace(go.Scatter(
            x=list(xs), y=list(ys), name=term_name(key, metric), mode="lines" if many else "lines+markers",
            line={"width": 3 if key == "loss" else 1.6, "color": TERM_COLORS[key]},
            marker={"size": 4},
        ), secondary_y=False)
    if metric:
        for i, (split, points) in enumerate(curves.eval_points(metric).items()):
            xs, ys = zip(*points)
            fig.add_trace(go.Scatter(
                x=list(xs), y=list(ys), name=f"{split} {metric}", mode="markers+text",
                text=[f"{y:.3f}" for y in ys], textposition="top center",
                marker={"size": 11, "symbol": "diamond", "color": PALETTE[(i + 4) % len(PALETTE)]},
            ), secondary_y=True)
    if curves.stage2_at:
        fig.add_vline(x=curves.stage2_at, line_dash="dash", line_color="#9ca3af",
                      annotation_text="stage 2", annotation_position="top left")
    if curves.total_steps:
        fig.update_xaxes(range=[0, curves.total_steps * 1.02])
    return fig


def compare_figure(runs: list[tuple[str, Curves, str | None]], term: str = "loss") -> go.Figure:
    """One line per run for a loss term, dev metrics as points in the run's colour on the right axis."""
    metrics = {m for _l, _c, m in runs if m}
    metric = metrics.pop() if len(metrics) == 1 else None
    fig = _base(f"{term_name(term, metric)} loss" + (f" and dev {metric}" if metric else ""), metric)
    if not runs:
        return _waiting(fig, "pick two or more runs to compare")
    drawn = False
    for i, (label, curves, run_metric) in enumerate(runs):
        color = PALETTE[i % len(PALETTE)]
        points = curves.series.get(term) or []
        if points:
            xs, ys = zip(*points)
            fig.add_trace(go.Scatter(x=list(xs), y=list(ys), name=label, mode="lines",
                                     line={"width": 2, "color": color}, legendgroup=label), secondary_y=False)
            drawn = True
        if curves.stage2_at:
            fig.add_vline(x=curves.stage2_at, line_dash="dot", line_color=color, opacity=0.5)
        if metric and run_metric == metric:
            for split, pts in curves.eval_points(metric).items():
                xs, ys = zip(*pts)
                fig.add_trace(go.Scatter(x=list(xs), y=list(ys), name=f"{label} {split}", mode="markers",
                                         marker={"size": 10, "symbol": "diamond", "color": color},
                                         legendgroup=label, showlegend=False), secondary_y=True)
    if not drawn:
        _waiting(fig, f"none of these runs logged the {term_name(term, metric)} term")
    return fig


def score_figure(rows: list[dict[str, Any]], metric: str) -> go.Figure:
    """Bar chart of the main dev score per run, with the teacher's score as a marker."""
    fig = go.Figure()
    fig.update_layout(title={"text": f"dev {metric}", "font": {"size": 14}}, height=320, template="plotly_white",
                      margin={"l": 50, "r": 20, "t": 50, "b": 80}, showlegend=True)
    if not rows:
        return _waiting(fig, "scores of the picked runs")
    labels = [r["run"] for r in rows]
    fig.add_trace(go.Bar(x=labels, y=[r.get("score") for r in rows], name="student",
                         marker_color=[PALETTE[i % len(PALETTE)] for i in range(len(rows))],
                         text=[f"{r['score']:.3f}" if isinstance(r.get("score"), float) else "" for r in rows],
                         textposition="outside"))
    if any(isinstance(r.get("teacher_score"), float) for r in rows):
        fig.add_trace(go.Scatter(x=labels, y=[r.get("teacher_score") for r in rows], name="teacher",
                                 mode="markers", marker={"symbol": "line-ew-open", "size": 30, "color": "#111827",
                                                         "line": {"width": 3}}))
    return fig


def experiment_figure(rows: list[dict[str, Any]], teacher_score: float | None, metric: str,
                      title: str = "") -> go.Figure:
    """Each variant's mean dev score with its standard deviation over seeds, every seed as a small dot, and the
    teacher as a dashed line. Points on a tight axis rather than bars from zero: the differences are a point or
    two, and bars would hide them (or, cut off above zero, exaggerate them)."""
    fig = go.Figure()
    fig.update_layout(title={"text": title or f"dev {metric} by variant (mean ± sd over seeds)", "font": {"size": 14}},
                      height=360, template="plotly_white", margin={"l": 60, "r": 20, "t": 50, "b": 90},
                      showlegend=True, yaxis_title=metric)
    if not rows:
        return _waiting(fig, "an experiment's results")
    names = [r["variant"] for r in rows]
    for i, r in enumerate(rows):
        n = len(r["scores"])
        offsets = [0.12 * (k - (n - 1) / 2) / max(1, n - 1) for k in range(n)] if n > 1 else [0.0]
        fig.add_trace(go.Scatter(x=[i + 0.18 + o for o in offsets], y=r["scores"], mode="markers",
                                 name="seeds", legendgroup="seeds", showlegend=i == 0,
                                 marker={"color": "#9ca3af", "size": 7}, hoverinfo="y"))
    fig.add_trace(go.Scatter(x=list(range(len(rows))), y=[r["mean"] for r in rows], mode="markers+text",
                             name="mean ± sd", text=[f"{r['mean']:.3f}" for r in rows], textposition="middle left",
                             error_y={"type": "data", "array": [r["std"] for r in rows], "visible": True,
                                      "thickness": 2, "width": 8},
                             marker={"size": 13, "color": [PALETTE[i % len(PALETTE)] for i in range(len(rows))]},
                             hovertext=[r.get("what", "") for r in rows]))
    values = [v for r in rows for v in r["scores"]] + [r["mean"] - r["std"] for r in rows]
    values += [r["mean"] + r["std"] for r in rows]
    if isinstance(teacher_score, (int, float)):
        values.append(teacher_score)
        fig.add_hline(y=teacher_score, line_dash="dash", line_color="#6b7280",
                      annotation_text=f"teacher {teacher_score:.3f}", annotation_position="top right")
    low, high = min(values), max(values)
    pad = max(0.01, 0.15 * (high - low))
    fig.update_xaxes(tickvals=list(range(len(rows))), ticktext=names, range=[-0.6, len(rows) - 0.4])
    fig.update_yaxes(range=[low - pad, high + pad])
    return fig
