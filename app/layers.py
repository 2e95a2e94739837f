"""The Layers tab (placeholder until the layer-alignment views land)."""

from __future__ import annotations

import gradio as gr

from lrc.runs import RunStore


def build_layers_tab(store: RunStore) -> None:
    """Fill the Layers tab; called inside `with gr.Tab("Layers"):`."""
    gr.Markdown("Layer alignment views (angular similarity, CKA, UMAP) are coming in a later release.")
