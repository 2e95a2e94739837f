"""The Predict tab: type a sentence (or a pair) and see the teacher's and the student's answers side by side,
with their latencies and sizes, and the dev examples where the two disagree.

The models come from `studio.predicting` through the app's model cache, so a second prediction with the same run
costs only the forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from lrc.errors import LRCError

from .. import predicting
from ..form import whole_number
from ..state import AppContext

PRIVATE = {"api_visibility": "private"}


class PredictCallbacks:
    """The Predict tab's callbacks; mixed into `studio.ui.Studio`."""

    ctx: AppContext

    def predict_choices(self) -> list[str]:
        return [r.id for r in self.ctx.store.list()
                if r.kind != "teacher" and predicting.has_model(r)]

    def refresh_predict_runs(self, current: str | None):
        choices = self.predict_choices()
        return gr.update(choices=choices, value=current if current in choices else next(iter(choices), None))

    def on_predict_run(self, run_id: str):
        """Show the second text box for pair tasks and the task's example inputs."""
        if not run_id:
            return gr.update(visible=False), gr.update(choices=[], value=None), "Pick a run with a trained student."
        try:
            pair = predicting.pair_for(self.ctx.store, run_id)
        except LRCError as exc:
            return gr.update(visible=False), gr.update(choices=[], value=None), f"**{exc}**"
        examples = predicting.load_examples(pair.task)
        spec = predicting.task_spec(pair.task)
        names = (spec.text_a, spec.text_b) if spec else ("text", "text pair")
        info = (f"task **{pair.task}** · labels: {', '.join(pair.labels) or 'a score (regression)'} · "
                f"teacher `{pair.teacher or 'none recorded'}`")
        return (gr.update(visible=pair.is_pair, label=f"second sentence ({names[1]})" if pair.is_pair else None),
                gr.update(choices=[(predicting.example_label(e), i) for i, e in enumerate(examples)], value=None),
                info)

    def pick_example(self, run_id: str, index: int | None):
        if index is None or not run_id:
            return gr.skip(), gr.skip()
        try:
            pair = predicting.pair_for(self.ctx.store, run_id)
        except LRCError:
            return gr.skip(), gr.skip()
        examples = predicting.load_examples(pair.task)
        if not 0 <= int(index) < len(examples):
            return gr.skip(), gr.skip()
        ex = examples[int(index)]
        return ex["text_a"], ex.get("text_b") or ""

    def predict(self, run_id: str, text_a: str, text_b: str = "") -> tuple:
        """Teacher and student on one input: label probabilities, agreement, latency, parameter count."""
        try:
            pair = predicting.pair_for(self.ctx.store, run_id)
            result = predicting.side_by_side(pair, text_a, text_b, self.ctx.model_cache())
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        return (predicting.label_value(result["teacher"]), predicting.label_value(result["student"]),
                predicting.comparison_markdown(result), result)

    def disagreements(self, run_id: str, max_examples: int = 200) -> tuple:
        """Dev examples where the student's answer differs from the teacher's."""
        try:
            limit = max(1, min(whole_number("max_examples", max_examples or 200), self.ctx.settings.disagreement_limit))
            pair = predicting.pair_for(self.ctx.store, run_id)
            result = predicting.find_disagreements(pair, self.ctx.model_cache(), limit,
                                                   data_dir=self.ctx.settings.data_dir)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        n, k = result["examples"], result["disagreements"]
        text = (f"On {n} {result['split']} examples the student agrees with the teacher on "
                f"**{result['agreement']:.1%}**; {k} disagreement{'s' if k != 1 else ''} below.") if n else \
            "No dev examples."
        # the short columns first, so the labels stay in view next to long sentences
        headers = ["gold", "teacher", "student"] + (["text_a", "text_b"] if result["is_pair"] else ["text"])
        rows = [[r["gold"], r["teacher"], r["student"], r["text_a"]] + ([r["text_b"]] if result["is_pair"] else [])
                for r in result["rows"]]
        return text, {"headers": headers, "data": rows}


@dataclass
class PredictHandles:
    run: gr.Dropdown


def build(studio: Any) -> PredictHandles:
    """Lay out the Predict tab and wire its own events (inside `with gr.Tab(...)`)."""
    ctx = studio.ctx
    with gr.Row(equal_height=False):
        with gr.Column(scale=2):
            p_run = gr.Dropdown(studio.predict_choices(), label="Student run", allow_custom_value=True,
                                info="A run with a trained student; its teacher is compared with it.",
                                elem_id="lrc-predict-run")
            p_info = gr.Markdown("", elem_classes="lrc-small")
            p_example = gr.Dropdown([], label="Example inputs", elem_id="lrc-example")
            text_a = gr.Textbox(label="Sentence", lines=2, placeholder="Type a sentence",
                                elem_id="lrc-text-a")
            text_b = gr.Textbox(label="Second sentence", lines=2, visible=False, elem_id="lrc-text-b")
            predict_btn = gr.Button("Predict", variant="primary", elem_id="lrc-predict")
        with gr.Column(scale=3):
            with gr.Row():
                teacher_label = gr.Label(label="Teacher", elem_id="lrc-teacher-label")
                student_label = gr.Label(label="Student", elem_id="lrc-student-label")
            verdict = gr.Markdown("", label="comparison", elem_id="lrc-verdict")
            with gr.Accordion("Raw result", open=False):
                raw = gr.JSON()
    with gr.Accordion("Disagreements on the dev set", open=False):
        with gr.Row():
            dis_n = gr.Slider(10, ctx.settings.disagreement_limit, 200, step=10,
                              label="Dev examples to score", scale=3)
            dis_btn = gr.Button("Find disagreements", scale=1)
        dis_text = gr.Markdown("")
        dis_table = gr.Dataframe(interactive=False, wrap=True, elem_id="lrc-disagreements")

    p_run.change(studio.on_predict_run, [p_run], [text_b, p_example, p_info], **PRIVATE)
    p_example.input(studio.pick_example, [p_run, p_example], [text_a, text_b], **PRIVATE)
    predict_event = dict(fn=studio.predict, inputs=[p_run, text_a, text_b],
                         outputs=[teacher_label, student_label, verdict, raw],
                         concurrency_limit=2, concurrency_id="predict")
    predict_btn.click(**predict_event, api_name="predict")
    text_a.submit(**predict_event, **PRIVATE)
    dis_btn.click(studio.disagreements, [p_run, dis_n], [dis_text, dis_table], api_name="disagreements",
                  concurrency_limit=1)
    return PredictHandles(run=p_run)
