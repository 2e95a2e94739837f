"""The Runs tab: every run of the store (from the app or the CLI) as a table, and what can be done with one:
download its model, push it to the hub, delete it.

Runs are folders, so the table survives restarts and shows the CLI's runs too; `studio.runs_view` turns a run
folder into the table's row and the `runs` API endpoint's record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from lrc.errors import LRCError

from .. import guard, runs_view
from ..state import AppContext

PRIVATE = {"api_visibility": "private"}


class RunsCallbacks:
    """The Runs tab's callbacks; mixed into `studio.ui.Studio`."""

    ctx: AppContext

    def runs(self) -> list[dict[str, Any]]:
        """Every run of the store, newest first: task, kind, status, method, metrics, size, speed, config."""
        return runs_view.list_records(self.ctx.store)

    def runs_table(self):
        """The table, and the run choices of the Compare picker and the Export picker."""
        records = self.runs()
        ids = [r["run"] for r in records]
        done = [r["run"] for r in records if r["has_model"]]
        table = gr.update(value={"headers": runs_view.TABLE_COLUMNS, "data": runs_view.table_rows(records)})
        return table, gr.update(choices=ids), gr.update(choices=done)

    def download(self, run_id: str) -> str:
        """The run's student (or teacher model) folder as a zip file."""
        try:
            return runs_view.zip_model(guard.open_run(self.ctx.store, run_id))
        except LRCError as exc:
            raise gr.Error(str(exc)) from None

    def delete(self, run_id: str, owner_key: str = "", request: gr.Request = None) -> str:
        """Delete a finished run's folder. Only the session that started it may (unless the operator allows it);
        a run that is queued or training must be stopped first, so a worker never writes into a deleted folder."""
        try:
            run = guard.open_run(self.ctx.store, run_id)
            guard.check_owner(run, request, self.ctx.settings.allow_foreign_stop, "delete", owner_key)
            if self.ctx.jobs.is_active(run.id) or run.status in ("queued", "running"):
                raise LRCError(f"run {run.id} is {run.status}; stop it first, then delete it")
            self.ctx.store.delete(run.id)
        except LRCError as exc:
            raise gr.Error(str(exc)) from None
        return f"Deleted {run.id}."

    def delete_api(self, run_id: str, request: gr.Request = None) -> str:
        """API: delete a finished run started by this API session."""
        return self.delete(run_id, "", request)

    def push(self, run_id: str, repo_id: str, private: bool = True) -> str:
        """Push the run's model to the Hugging Face hub (needs HF_TOKEN in the app's environment)."""
        token = self.ctx.settings.hub_token
        if not token:
            raise gr.Error("no hub token is configured: set HF_TOKEN for the app to push models")
        try:
            url = runs_view.push_to_hub(guard.open_run(self.ctx.store, run_id), repo_id, token, private)
        except LRCError as exc:
            raise gr.Error(guard.scrub(str(exc), [token])) from None
        except Exception as exc:  # network, auth, quota: one readable line, never the token
            first = (str(exc).splitlines() or [""])[0][:300]
            raise gr.Error(guard.scrub(f"push failed: {type(exc).__name__}: {first}", [token])) from None
        return guard.scrub(f"Pushed to [{repo_id}]({url})", [token])


@dataclass
class RunsHandles:
    table: gr.Dataframe
    export_pick: gr.Dropdown
    refresh: gr.Button
    deleted: Any  # the Delete button's event: the run lists refresh after it


def build(studio: Any, owner_key: gr.BrowserState) -> RunsHandles:
    """Lay out the Runs tab and wire its own events (inside `with gr.Tab(...)`)."""
    ctx = studio.ctx
    with gr.Row():
        refresh_btn = gr.Button("Refresh", size="sm", scale=0, elem_id="lrc-refresh")
        gr.Markdown("Every run in the store, from the app or the CLI, newest first. Runs survive restarts: they "
                    "are folders.", elem_classes="lrc-small")
    table = gr.Dataframe(headers=runs_view.TABLE_COLUMNS, interactive=False, wrap=True, elem_id="lrc-runs-table",
                         max_height=420, column_widths=runs_view.TABLE_WIDTHS)
    gr.Markdown("### Export")
    with gr.Row():
        export_pick = gr.Dropdown([], label="Run", info="A run with a saved model.", scale=2,
                                  allow_custom_value=True)
        download_btn = gr.Button("Download student (.zip)", scale=1)
        download_file = gr.File(label="Zip", interactive=False, scale=2)
    hub_ready = bool(ctx.settings.hub_token)
    with gr.Row(visible=hub_ready):
        repo = gr.Textbox(label="Hub repository", placeholder="your-user/lrc-sst2-student", scale=2)
        private = gr.Checkbox(True, label="Private", scale=0)
        push_btn = gr.Button("Push to hub", scale=1)
    with gr.Row():
        delete_btn = gr.Button("Delete run", variant="stop", size="sm", scale=0, elem_id="lrc-delete")
        delete_msg = gr.Markdown("", elem_classes="lrc-small")
    push_msg = gr.Markdown("" if hub_ready else "<span class='lrc-small'>Pushing to the hub needs a token: start "
                                                "the app with `HF_TOKEN` set.</span>")

    download_btn.click(studio.download, [export_pick], [download_file], api_name="download")
    push_btn.click(studio.push, [export_pick, repo, private], [push_msg], api_name="push")
    gr.api(studio.delete_api, api_name="delete")
    gr.api(studio.runs, api_name="runs")
    deleted = delete_btn.click(studio.delete, [export_pick, owner_key], [delete_msg], api_name="_delete_button",
                               **PRIVATE)
    return RunsHandles(table=table, export_pick=export_pick, refresh=refresh_btn, deleted=deleted)
