"""LRC Studio: `python app.py` opens the Gradio app (also the Hugging Face Spaces entry point).

    python app.py --data-dir ../shared/glue --runs-dir runs        # or GLUE_DIR=... LRC_RUNS_DIR=... python app.py
    gradio app.py -- --data-dir ../shared/glue                     # the same, reloading when a file changes

Options fall back to the environment: GLUE_DIR (data), LRC_RUNS_DIR (run store), LRC_PRESET and LRC_TEACHER
(the Distill form's starting preset and teacher), HF_TOKEN (push to the hub), GRADIO_SERVER_NAME and
GRADIO_SERVER_PORT (where to listen). Operator switches, environment only: LRC_ALLOW_LOCAL_PATHS,
LRC_ALLOW_FOREIGN_STOP, LRC_MAX_UPLOAD_MB (README, "Operator settings"). The server itself is studio/server.py;
the app's package is `studio/` (not `app/`, whose name would shadow this file in gradio's reload mode).
"""

from __future__ import annotations

import os
import sys

if os.environ.get("SPACES_ZERO_GPU"):
    try:  # on ZeroGPU, `spaces` must be imported before torch touches CUDA
        import spaces  # noqa: F401
    except ImportError:
        pass

from studio.server import build_demo, launch  # noqa: E402

# module level, because gradio's reload mode re-runs this file and serves the `demo` it finds here
demo = build_demo(sys.argv[1:] if __name__ == "__main__" else [])

if __name__ == "__main__":
    launch(demo)
