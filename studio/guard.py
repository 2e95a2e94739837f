"""Who may do what, and which paths a request may name: the app's rules for a public deployment.

A Space serves strangers, so by default:
- a run id names one folder directly inside the run store, and a run whose files link outside it is refused
  (`open_run`), so no id, `../`, absolute path or planted symlink reads or zips a file elsewhere;
- a teacher given in the form or the API is the bundled MiniLM, a run of the store, the teacher the operator
  started the app with, or a hub id of the hub's own shape; any other local path is refused unless the operator
  sets `LRC_ALLOW_LOCAL_PATHS=1` (`check_teacher`), so nobody can make the server read its own disk;
- only the session that started a run may stop or delete it, unless the operator sets
  `LRC_ALLOW_FOREIGN_STOP=1` (`check_owner`); a run without an owner (the CLI's) counts as the operator's;
- the hub token is the operator's (`HF_TOKEN`), and `scrub` keeps it out of every message.

Everything here is plain Python on plain values (no Gradio), so the tests call it directly.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path
from typing import Any, Iterable

from lrc.errors import LRCError
from lrc.runs import Run, RunStore

BUNDLED_NAMES = ("", "bundled", "bundled:minilm", "minilm")
TRUE = ("1", "true", "yes", "on")


class AccessDenied(LRCError):
    """A request asked for something this deployment does not allow; the message says who can allow it."""


# ---- operator settings -------------------------------------------------------------------------------------------

def env_flag(name: str, environ: dict[str, str] | None = None) -> bool:
    """An on/off operator setting: on for 1/true/yes/on, off when unset or anything else."""
    return (environ if environ is not None else os.environ).get(name, "").strip().lower() in TRUE


def env_whole_number(name: str, default: int, minimum: int = 1, environ: dict[str, str] | None = None) -> int:
    """A whole-number operator setting; a bad value stops the app at start with the fix, not later."""
    raw = (environ if environ is not None else os.environ).get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise LRCError(f"{name} must be a whole number >= {minimum}; got {raw!r} (unset it for the default {default})")
    return value


# ---- paths -------------------------------------------------------------------------------------------------------

def inside(path: Path, root: Path) -> bool:
    """Whether `path`, with every symlink followed, is `root` or lies under it."""
    try:
        Path(path).resolve().relative_to(Path(root).resolve())
    except ValueError:
        return False
    return True


def escaping_links(folder: Path) -> list[Path]:
    """Symlinks under `folder` that point outside it (a run folder planted to serve another file)."""
    folder = Path(folder)
    bad = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in dirnames + filenames:
            entry = Path(dirpath) / name
            if entry.is_symlink() and not inside(entry, folder):
                bad.append(entry)
    return bad


def open_run(store: RunStore, run_id: Any) -> Run:
    """A run of the store by id, refused when the id is not one safe folder name or its files link outside it."""
    if not isinstance(run_id, str) or not run_id.strip():
        raise LRCError("no run given: pick a run from the list")
    run = store.get(run_id.strip())  # validates the id and that the folder itself is inside the store
    if not inside(run.path, store.root) or escaping_links(run.path):
        raise AccessDenied(f"run {run.id!r} links to files outside the run store; it cannot be opened from the app")
    return run


def _is_store_path(spec: str, store: RunStore) -> bool:
    path = Path(spec).expanduser()
    return path.exists() and inside(path, store.root) and path.resolve() != store.root.resolve()


def check_teacher(spec: str | None, store: RunStore, allow_local: bool,
                  operator: Iterable[str | None] = ()) -> str | None:
    """The teacher a request may use, or None for the bundled one.

    Allowed: the bundled MiniLM; a run folder of the store (what the form lists); the operator's own teacher
    (`--teacher` / `LRC_TEACHER`); a hub id of the hub's shape. Other local paths only with LRC_ALLOW_LOCAL_PATHS=1.
    """
    from lrc.models import looks_like_path, validate_hub_id

    if spec is not None and not isinstance(spec, str):
        raise LRCError(f"teacher must be text (a hub id or a teacher run from the list); got {spec!r}")
    text = (spec or "").strip()
    if text.lower() in BUNDLED_NAMES:
        return None
    if text in {str(o).strip() for o in operator if o}:
        return text
    if _is_store_path(text, store):
        open_run(store, Path(text).resolve().relative_to(store.root.resolve()).parts[0])
        return text
    if allow_local:
        return text  # lrc.models.resolve_model_path checks the folder or the hub id
    if Path(text).expanduser().exists() or looks_like_path(text):
        raise AccessDenied(
            f"loading a model from a local path ({text!r}) is turned off in this app; pick the bundled teacher, "
            f"a teacher run from the list, or a hub id (the operator can allow local paths with "
            f"LRC_ALLOW_LOCAL_PATHS=1)")
    return validate_hub_id(text)


# ---- owners ------------------------------------------------------------------------------------------------------

_OWNER_KEY = re.compile(r"^[0-9a-f]{32}$")


def new_owner_key(current: Any = "") -> str:
    """The browser's owner key: kept if it is one, else a fresh random one (the page stores it in localStorage)."""
    return current if isinstance(current, str) and _OWNER_KEY.match(current) else secrets.token_hex(16)


def session_of(request: Any, owner_key: Any = "") -> str | None:
    """Who a request comes from: the browser's owner key when the page sent one (it survives a reload, unlike
    the Gradio session), else the Gradio session; None for a call from Python (the operator's own code)."""
    if request is None:
        return None
    if isinstance(owner_key, str) and _OWNER_KEY.match(owner_key):
        return "browser-" + owner_key
    return getattr(request, "session_hash", None)


def check_owner(run: Run, request: Any, allow_foreign: bool, action: str = "stop", owner_key: Any = "") -> None:
    """Refuse to let one user stop or delete a run another user (or the operator) started."""
    if request is None or allow_foreign:
        return
    owner, session = run.meta.get("owner"), session_of(request, owner_key)
    if owner and session and owner == session:
        return
    who = "another user" if owner else "the operator (outside the app)"
    raise AccessDenied(f"run {run.id} was started by {who}; only the session that started it can {action} it "
                       f"(the operator can allow this with LRC_ALLOW_FOREIGN_STOP=1)")


# ---- secrets -----------------------------------------------------------------------------------------------------

def scrub(text: str, secrets: Iterable[str | None]) -> str:
    """`text` with every secret (the hub token) replaced, for messages built from third-party exceptions."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text
