"""LRC Studio: `python app.py` opens the Gradio app (also the Hugging Face Spaces entry point).

    python app.py --data-dir ../shared/glue --runs-dir runs        # or GLUE_DIR=... LRC_RUNS_DIR=... python app.py

Options fall back to the environment: GLUE_DIR (data), LRC_RUNS_DIR (run store), LRC_PRESET and LRC_TEACHER
(the Distill form's starting preset and teacher), HF_TOKEN (push to the hub), GRADIO_SERVER_NAME and
GRADIO_SERVER_PORT (where to listen).
"""

from __future__ import annotations

import argparse
import os
import sys


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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if os.environ.get("SPACES_ZERO_GPU"):
        try:  # on ZeroGPU, `spaces` must be imported before torch touches CUDA
            import spaces  # noqa: F401
        except ImportError:
            pass
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from app.state import AppContext, AppSettings
    from app.ui import build_app, launch_kwargs

    settings = AppSettings.from_env(runs_dir=args.runs_dir, data_dir=args.data_dir, preset=args.preset,
                                    teacher=args.teacher, max_queue=args.max_queue)
    ctx = AppContext.create(settings)
    demo = build_app(ctx)
    demo.queue(default_concurrency_limit=2, max_size=64)
    try:
        demo.launch(server_name=args.host, server_port=args.port, share=args.share or None,
                    allowed_paths=[], **launch_kwargs())
    finally:
        ctx.jobs.close()


if __name__ == "__main__":
    main()
