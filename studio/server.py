"""Start the app: command line and environment -> settings -> Blocks -> a queued, launched server.

`app.py` (the Spaces entry point) calls `main`; `tools.apptest` calls it with a stand-in runner, so the tests
launch the very server users get, queue settings and upload limit included.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import gradio as gr

from lrc.errors import LRCError

from .jobs import JobManager
from .state import AppContext, AppSettings
from .ui import build_app, launch_kwargs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python app.py", description="LRC Studio, the Gradio app.")
    p.add_argument("--runs-dir", default=None, help="run store folder (default: $LRC_RUNS_DIR, else runs/)")
    p.add_argument("--data-dir", default=None,
                   help="local GLUE folder (default: $GLUE_DIR, else GLUE from the Hugging Face hub)")
    p.add_argument("--preset", default=None,
                   help="preset the Distill form starts from: a name or a YAML path (default: quick-cpu on CPU, "
                        "lrc-paper on a GPU)")
    p.add_argument("--teacher", default=None,
                   help="teacher the Distill form starts with: a run folder, model folder or hub id (default: "
                        "$LRC_TEACHER, else the bundled MiniLM)")
    p.add_argument("--host", default=None, help="address to listen on (default: $GRADIO_SERVER_NAME or 127.0.0.1)")
    p.add_argument("--port", type=int, default=None, help="port (default: $GRADIO_SERVER_PORT or 7860)")
    p.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    p.add_argument("--max-queue", type=int, default=None, help="most runs waiting at once (default 20)")
    return p.parse_args(argv)


def build_demo(argv: list[str] | None = None, runner: Any = None) -> gr.Blocks:
    """Settings from the command line and the environment, then the queued Blocks (not launched yet).
    `runner` replaces lrc's pipeline in the job queue (tests only). A bad operator setting ends the process
    with one `error:` line before anything starts."""
    args = parse_args(argv)
    try:
        settings = AppSettings.from_env(runs_dir=args.runs_dir, data_dir=args.data_dir, preset=args.preset,
                                        teacher=args.teacher, max_queue=args.max_queue)
    except LRCError as exc:
        sys.exit(f"error: {exc}")
    ctx = AppContext.create(settings)
    if runner is not None:
        ctx.jobs = JobManager(ctx.store, devices=["cpu"], runner=runner, max_queue=settings.max_queue)
    demo = build_app(ctx)
    demo.queue(default_concurrency_limit=2, max_size=64)
    demo.lrc_args = args
    return demo


def launch(demo: gr.Blocks) -> None:
    """Serve until interrupted (in gradio's reload mode, `launch` returns at once on a reload)."""
    args = demo.lrc_args
    ctx = demo.studio.ctx
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share or None,
                    allowed_paths=[], **launch_kwargs(ctx.settings))
    finally:
        if not demo.dev_mode:  # a reload keeps the running server; only the real end closes the queue
            ctx.jobs.close()


def main(argv: list[str] | None = None, runner: Any = None) -> None:
    launch(build_demo(argv, runner))
