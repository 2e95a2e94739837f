"""Plotly figures for the Layers tab, built from the plain dicts `lrc.analysis` returns (no computation here).

Every figure works in any plotly renderer: the snapshot slider changes the bars with `update` steps carried in
the layout (no animation frames), so it also works where a host drops `frames`.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import plotly.graph_objects as go

LABEL_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]
OWN_COLOR, NEG_COLOR, MARGIN_COLOR = "#2b6cb0", "#c05621", "#2f855a"
VALUE_TITLES = {
    "cos_own": "cosine to own teacher vector",
    "cos_neg": "cosine to other examples' teacher vectors",
    "margin": "margin (own − others)",
    "angular_own": "angular distance 1 − cos (own)",
}


def _layer_names(layers: Sequence[int], prefix: str) -> list[str]:
    return [f"{prefix}{k} (emb)" if k == 0 else f"{prefix}{k}" for k in layers]


def _fmt(v: float | None, digits: int = 3) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _nan_to_none(matrix: Sequence[Sequence[float]]) -> list[list[float | None]]:
    return [[None if v is None or (isinstance(v, float) and math.isnan(v)) else v for v in row] for row in matrix]


def empty_figure(message: str, height: int = 320) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper",
                       font={"size": 14, "color": "#555"})
    fig.update_layout(height=height, xaxis={"visible": False}, yaxis={"visible": False},
                      margin={"l": 20, "r": 20, "t": 30, "b": 20}, template="plotly_white")
    return fig


def _layer_map_trace(layer_map: Sequence[int], xs: list[str], ys: list[str], student_layers, teacher_layers):
    px, py = [], []
    for m, n in enumerate(layer_map, start=1):
        if m in student_layers and n in teacher_layers:
            px.append(xs[student_layers.index(m)])
            py.append(ys[teacher_layers.index(n)])
    return go.Scatter(x=px, y=py, mode="markers+lines", name="layer map (trained pairs)",
                      marker={"symbol": "square-open", "size": 34, "color": "black", "line": {"width": 3}},
                      line={"color": "black", "width": 1, "dash": "dot"}, hoverinfo="skip")


def similarity_heatmap(sim: dict[str, Any], value: str = "cos_own", title: str | None = None) -> go.Figure:
    """Teacher layers (rows, embeddings at the bottom) x student layers (columns); the layer map boxed."""
    tl, sl = sim["teacher_layers"], sim["student_layers"]
    xs, ys = _layer_names(sl, "S"), _layer_names(tl, "T")
    z = _nan_to_none(sim[value])
    custom = [[[_fmt(sim["cos_own"][r][c]), _fmt(sim["cos_neg"][r][c]), _fmt(sim["margin"][r][c]),
                _fmt(sim["angular_own"][r][c]), sim["projection_source"][c] or "not comparable"]
               for c in range(len(sl))] for r in range(len(tl))]
    text = [["n/a" if v is None else f"{v:.2f}" for v in row] for row in z]
    if value == "margin":
        finite = [abs(v) for row in z for v in row if v is not None] or [1.0]
        lim = max(finite)
        scale = {"colorscale": "RdBu", "zmid": 0.0, "zmin": -lim, "zmax": lim}
    else:
        scale = {"colorscale": "RdBu", "zmid": 0.0, "zmin": -1.0, "zmax": 1.0}
    fig = go.Figure(go.Heatmap(
        z=z, x=xs, y=ys, text=text, texttemplate="%{text}", customdata=custom, colorbar={"title": "cos"}, **scale,
        hovertemplate=("teacher %{y} · student %{x}<br>cos own %{customdata[0]} · cos others %{customdata[1]}"
                       "<br>margin %{customdata[2]} · angular distance %{customdata[3]}"
                       "<br>projection %{customdata[4]}<extra></extra>"),
    ))
    fig.add_trace(_layer_map_trace(sim.get("layer_map", []), xs, ys, sl, tl))
    fig.update_layout(
        title=title or f"Angular similarity: {VALUE_TITLES.get(value, value)}",
        xaxis={"title": "student layer", "type": "category"}, yaxis={"title": "teacher layer", "type": "category"},
        height=max(340, 60 * len(tl) + 120), template="plotly_white",
        legend={"orientation": "h", "y": -0.18}, margin={"l": 70, "r": 20, "t": 60, "b": 70},
    )
    return fig


def cka_heatmap(cka: dict[str, Any], title: str | None = None) -> go.Figure:
    tl, sl = cka["teacher_layers"], cka["student_layers"]
    xs, ys = _layer_names(sl, "S"), _layer_names(tl, "T")
    z = _nan_to_none(cka["cka"])
    text = [["n/a" if v is None else f"{v:.2f}" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(
        z=z, x=xs, y=ys, text=text, texttemplate="%{text}", colorscale="Viridis", zmin=0.0, zmax=1.0,
        colorbar={"title": "CKA"}, hovertemplate="teacher %{y} · student %{x}<br>linear CKA %{z:.3f}<extra></extra>",
    ))
    fig.add_trace(_layer_map_trace(cka.get("layer_map", []), xs, ys, sl, tl))
    fig.update_layout(
        title=title or "Linear CKA (minibatch, unbiased)",
        xaxis={"title": "student layer", "type": "category"}, yaxis={"title": "teacher layer", "type": "category"},
        height=max(340, 60 * len(tl) + 120), template="plotly_white",
        legend={"orientation": "h", "y": -0.18}, margin={"l": 70, "r": 20, "t": 60, "b": 70},
    )
    return fig


def mapped_bars(mapped: dict[str, Any], title: str | None = None) -> go.Figure:
    """Per mapped pair: cosine to the own teacher vector next to cosine to other examples' teacher vectors."""
    if not mapped.get("student_layers"):
        return empty_figure("this run has no mapped layers (no COS-NCE): nothing to compare pair by pair")
    names = [f"S{m} ↔ T{n}" for m, n in zip(mapped["student_layers"], mapped["teacher_layers"])]
    own = [None if _isnan(v) else v for v in mapped["cos_own"]]
    neg = [None if _isnan(v) else v for v in mapped["cos_neg"]]
    fig = go.Figure([
        go.Bar(x=names, y=own, name="own teacher vector", marker_color=OWN_COLOR,
               text=[_fmt(v, 2) for v in mapped["cos_own"]], textposition="outside"),
        go.Bar(x=names, y=neg, name="other examples (negatives)", marker_color=NEG_COLOR,
               text=[_fmt(v, 2) for v in mapped["cos_neg"]], textposition="outside"),
    ])
    for name, m in zip(names, mapped["margin"]):
        fig.add_annotation(x=name, y=1.12, text=f"margin {_fmt(m, 2)}", showarrow=False, font={"color": MARGIN_COLOR})
    fig.update_layout(title=title or "Mapped layers: cosine to own vs to negatives", barmode="group",
                      yaxis={"title": "mean cosine", "range": [min(-0.1, *(v for v in own + neg if v is not None)),
                                                               1.2]},
                      height=360, template="plotly_white", legend={"orientation": "h", "y": -0.2},
                      margin={"l": 60, "r": 20, "t": 60, "b": 60})
    return fig


def _isnan(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("<", "&lt;").replace(">", "&gt;")


def scatter_figure(sc: dict[str, Any], lines: bool = True, title: str | None = None) -> go.Figure:
    """Teacher points (circles) and student points (diamonds) in the teacher's 2-D map, coloured by gold label."""
    t_xy, s_xy = sc["teacher_xy"], sc.get("student_xy")
    labels, names = sc["labels"], sc.get("label_names") or []
    texts = [_short(t) for t in sc["texts"]]
    gold = [names[int(y)] if names and int(y) < len(names) else _fmt(float(y), 2) for y in labels]
    custom = [[texts[i], gold[i], str(sc["teacher_pred"][i]), str(sc["student_pred"][i])] for i in range(len(labels))]
    hover = ("%{customdata[0]}<br>gold: %{customdata[1]} · teacher: %{customdata[2]} · "
             "student: %{customdata[3]}<extra>%{fullData.name}</extra>")
    fig = go.Figure()
    if lines and s_xy is not None:
        lx, ly = [], []
        for (tx, ty), (sx, sy) in zip(t_xy, s_xy):
            lx += [tx, sx, None]
            ly += [ty, sy, None]
        fig.add_trace(go.Scatter(x=lx, y=ly, mode="lines", name="same example", hoverinfo="skip",
                                 line={"color": "rgba(120,120,120,0.35)", "width": 1}))
    regression = not names
    groups = [(None, list(range(len(labels))))] if regression else \
        [(k, [i for i, y in enumerate(labels) if int(y) == k]) for k in range(len(names))]
    models = [("teacher", t_xy, "circle")] + ([("student", s_xy, "diamond")] if s_xy is not None else [])
    for model, xy, symbol in models:
        for k, idx in groups:
            if not idx:
                continue
            marker = {"symbol": symbol, "size": 8 if model == "teacher" else 9,
                      "line": {"width": 1, "color": "white" if model == "teacher" else "black"}}
            if regression:
                marker.update(color=[labels[i] for i in idx], colorscale="Viridis", showscale=model == "teacher",
                              colorbar={"title": "gold"})
                name = model
            else:
                marker["color"] = LABEL_COLORS[k % len(LABEL_COLORS)]
                name = f"{model} · {names[k]}"
            fig.add_trace(go.Scatter(
                x=[xy[i][0] for i in idx], y=[xy[i][1] for i in idx], mode="markers", name=name, marker=marker,
                customdata=[custom[i] for i in idx], hovertemplate=hover, opacity=0.85 if model == "teacher" else 1,
            ))
    method = sc.get("method", "umap").upper()
    tl, sl = sc["teacher_layer"], sc["student_layer"]
    note = "" if s_xy is not None else " (student not comparable at this width)"
    fig.update_layout(
        title=title or f"{method} of teacher layer T{tl}, student layer S{sl} placed in it{note}",
        xaxis={"title": f"{method} 1", "zeroline": False}, yaxis={"title": f"{method} 2", "zeroline": False},
        height=520, template="plotly_white", legend={"orientation": "h", "y": -0.15},
        margin={"l": 60, "r": 20, "t": 60, "b": 60},
    )
    return fig


def snapshot_bars(snapshots: list[dict[str, Any]], index: int | None = None) -> go.Figure:
    """Mapped-layer cosines at one training snapshot, with a slider over all snapshots (update steps)."""
    if not snapshots:
        return empty_figure("no alignment snapshots in this run: train with snapshot_every > 0 (--snapshot-every N)")
    index = len(snapshots) - 1 if index is None else max(0, min(index, len(snapshots) - 1))
    first = snapshots[index]
    names = [f"S{m} ↔ T{n}" for m, n in enumerate(first["layers"], start=1)]

    def clean(values):
        return [None if _isnan(v) else v for v in values]

    fig = go.Figure([
        go.Bar(x=names, y=clean(first["cos_own"]), name="own teacher vector", marker_color=OWN_COLOR),
        go.Bar(x=names, y=clean(first["cos_neg"]), name="other examples (negatives)", marker_color=NEG_COLOR),
        go.Bar(x=names, y=clean(first["margin"]), name="margin", marker_color=MARGIN_COLOR),
    ])
    steps = []
    for snap in snapshots:
        steps.append({
            "label": str(snap["step"]), "method": "update",
            "args": [{"y": [clean(snap["cos_own"]), clean(snap["cos_neg"]), clean(snap["margin"])]},
                     {"title.text": f"Alignment on the probe set at step {snap['step']}"}],
        })
    values = [v for s in snapshots for k in ("cos_own", "cos_neg", "margin") for v in s[k] if not _isnan(v)]
    fig.update_layout(
        title=f"Alignment on the probe set at step {first['step']}", barmode="group",
        yaxis={"title": "mean cosine", "range": [min(-0.05, min(values, default=0) - 0.05), 1.05]},
        sliders=[{"active": index, "currentvalue": {"prefix": "step "}, "pad": {"t": 40}, "steps": steps}],
        height=420, template="plotly_white", legend={"orientation": "h", "y": 1.12, "x": 0},
        margin={"l": 60, "r": 20, "t": 90, "b": 40},
    )
    return fig


def snapshot_lines(snapshots: list[dict[str, Any]], stage2_at: int | None = None) -> go.Figure:
    """Each mapped pair's cosine to own (solid) and to negatives (dashed) against the training step."""
    if not snapshots:
        return empty_figure("no alignment snapshots in this run")
    steps = [s["step"] for s in snapshots]
    fig = go.Figure()
    for k, layer in enumerate(snapshots[0]["layers"]):
        color = LABEL_COLORS[k % len(LABEL_COLORS)]
        name = f"S{k + 1} ↔ T{layer}"
        fig.add_trace(go.Scatter(x=steps, y=[s["cos_own"][k] for s in snapshots], mode="lines+markers",
                                 name=f"{name} own", line={"color": color}))
        fig.add_trace(go.Scatter(x=steps, y=[s["cos_neg"][k] for s in snapshots], mode="lines+markers",
                                 name=f"{name} negatives", line={"color": color, "dash": "dash"}))
    if stage2_at is not None:
        fig.add_vline(x=stage2_at, line={"color": "#888", "dash": "dot"}, annotation_text="stage 2",
                      annotation_position="top right")
    fig.update_layout(title="Alignment during training (probe set)", xaxis={"title": "step"},
                      yaxis={"title": "mean cosine"}, height=360, template="plotly_white",
                      legend={"orientation": "h", "y": -0.25}, margin={"l": 60, "r": 20, "t": 60, "b": 60})
    return fig


__all__ = ["empty_figure", "similarity_heatmap", "cka_heatmap", "mapped_bars", "scatter_figure", "snapshot_bars",
           "snapshot_lines"]
