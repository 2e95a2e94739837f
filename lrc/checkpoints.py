"""Resumable checkpoints: everything a run needs to continue bit for bit, written atomically.

A checkpoint folder holds Accelerate's `save_state` (model, optimizer, scheduler, RNG states), each process's
negative bank, and `trainer_state.json` (the step, the data position: the shuffling generator's state at the
epoch's start and the batches taken, and what the run needs to rebuild itself). It is written into a temp folder
and swapped in (`lrc.runs.swap_in`), so a crash or a full disk mid-save leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from accelerate import Accelerator
from safetensors.torch import load_file, save_file

from .bank import NegativeBank
from .errors import LRCError
from .runs import swap_in, temp_dir_for

CHECKPOINT = "checkpoint"  # the checkpoint folder's name inside a run folder
STATE_FILE = "trainer_state.json"


def save_checkpoint(acc: Accelerator, target: Path, state: dict[str, Any], bank: NegativeBank | None) -> None:
    """Write `target` atomically from every process (each saves its own bank; the main process the state)."""
    tmp = target.with_name(f".{target.name}.tmp")
    if acc.is_main_process:
        temp_dir_for(target)
    acc.wait_for_everyone()
    try:
        acc.save_state(str(tmp))
        if bank is not None:  # each process has its own bank (its own negatives and generator)
            save_file(bank.state_dict(), str(tmp / f"bank-{acc.process_index}.safetensors"))
        if acc.is_main_process:
            (tmp / STATE_FILE).write_text(json.dumps(state), encoding="utf-8")
    except Exception as exc:
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        raise disk_error(exc, target) from exc
    acc.wait_for_everyone()
    if acc.is_main_process:
        swap_in(target, tmp)
    acc.wait_for_everyone()


def load_checkpoint(acc: Accelerator, source: Path, bank: NegativeBank | None) -> dict[str, Any]:
    """Load a checkpoint into the prepared objects (and this process's bank); returns its trainer state."""
    state = read_trainer_state(source)
    acc.load_state(str(source))
    bank_file = Path(source) / f"bank-{acc.process_index}.safetensors"
    if bank is not None and bank_file.exists():
        bank.load_state_dict(load_file(str(bank_file)), acc.device)
    return state


def read_trainer_state(checkpoint: Path) -> dict[str, Any]:
    """The step and data position of a checkpoint, with a clear error when there is none."""
    path = Path(checkpoint) / "trainer_state.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LRCError(f"no checkpoint in {checkpoint}: the run saved none (set save_every, or stop it from the "
                       f"app or with Ctrl-C, which checkpoints)") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise LRCError(f"the checkpoint in {checkpoint} is damaged (unreadable trainer_state.json)") from None


_DISK_ERRNOS = (28, 27, 122)  # ENOSPC, EFBIG (a file-size limit), EDQUOT


def is_disk_full(exc: BaseException) -> bool:
    """A write refused for space: an OSError, or safetensors' Rust error that only carries "(os error N)"."""
    if isinstance(exc, OSError) and exc.errno in _DISK_ERRNOS:
        return True
    text = str(exc)
    return any(f"os error {n})" in text for n in _DISK_ERRNOS) or "No space left" in text


def disk_error(exc: BaseException, target: Path) -> Exception:
    """Disk full (or a file-size limit) while saving: say so; the previous checkpoint is untouched."""
    if is_disk_full(exc):
        reason = getattr(exc, "strerror", None) or str(exc).split(": ")[-1]
        return LRCError(f"not enough disk space to save {target} ({reason}); free some space and resume the "
                        f"run (--resume, or Resume in the app); the previous checkpoint and model are intact")
    return exc
