"""What the app benchmarks share: a checked GLUE folder and the thread/offline environment set before imports."""

from __future__ import annotations

import argparse
import os
from pathlib import Path


def prepare_environment(p: argparse.ArgumentParser, args: argparse.Namespace) -> Path:
    """Check --data-dir holds SST-2, pin OMP/MKL/NUMBA threads (inherited by the app process), stay offline.

    Must run before torch, numba or gradio are imported: they read these variables once, at import.
    """
    if not args.data_dir or not (Path(args.data_dir) / "SST-2" / "train.tsv").exists():
        p.error("--data-dir (or GLUE_DIR) must point at a GLUE folder with SST-2/")
    if args.threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
            os.environ[var] = str(args.threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    return Path(args.data_dir).resolve()
