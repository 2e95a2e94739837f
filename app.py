"""LRC Studio: `python app.py` opens the Gradio app (also the Hugging Face Spaces entry point).

    python app.py --data-dir ../shared/glue --runs-dir runs        # or GLUE_DIR=... LRC_RUNS_DIR=... python app.py

Options fall back to the environment: GLUE_DIR (data), LRC_RUNS_DIR (run store), LRC_PRESET and LRC_TEACHER
(the Distill form's starting preset and teacher), HF_TOKEN (push to the hub), GRADIO_SERVER_NAME and
GRADIO_SERVER_PORT (where to listen). Operator switches, environment only: LRC_ALLOW_LOCAL_PATHS,
LRC_ALLOW_FOREIGN_STOP, LRC_MAX_UPLOAD_MB (README, "Operator settings"). The server itself is app/server.py.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    if os.environ.get("SPACES_ZERO_GPU"):
        try:  # on ZeroGPU, `spaces` must be imported before torch touches CUDA
            import spaces  # noqa: F401
        except ImportError:
            pass
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from app.server import main as serve

    serve(argv)


if __name__ == "__main__":
    main()
