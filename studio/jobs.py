"""Training outside the request thread: one worker per device, a FIFO of run requests, Stop per run.

`JobManager.submit` writes the run folder (status `queued`) and returns at once; a worker thread takes jobs in
order and runs `lrc.pipeline.run_distill` on them, which appends every event to the run's `events.jsonl`. The UI
never waits on a job: it reads the run folder as events land, so a refresh or a second tab re-attaches.

- One worker per device: `cpu`, or `cuda` (Accelerate keeps one process-wide device state, so one GPU worker per
  process), or `zerogpu` where the `spaces` package runs on a ZeroGPU Space.
- Stop: a per-run `threading.Event`, plus a `STOP` file in the run folder so a stop also reaches a run that
  executes in another process (ZeroGPU forks one per GPU call). The trainer checks it before every step, saves
  the student and ends the run as `stopped`. A job that has not started yet is taken off the queue.
- Queue position is what a waiting user sees: `describe(run_id)`.
- ZeroGPU: each GPU call is capped by the Space's time limit, so a run gets a GPU chunk of at most
  `LRC_ZEROGPU_SECONDS` (default 110 s); when the chunk's time is nearly spent the trainer is asked to stop, and
  the run ends `stopped` with the student it learned so far saved (lrc's trainer has no resume, so a run does not
  continue in a second chunk: size ZeroGPU runs to fit one).
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

from lrc.config import DistillConfig
from lrc.errors import LRCError
from lrc.runs import TERMINAL, Run, RunStore

STOP_FILE = "STOP"
Runner = Callable[[DistillConfig, Run, Callable[[], bool], RunStore], None]


class QueueFull(LRCError):
    pass


@dataclass
class Job:
    run_id: str
    config: DistillConfig
    owner: str | None = None
    stop_event: threading.Event = field(default_factory=threading.Event)
    state: str = "waiting"  # waiting | running | done
    device: str | None = None
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    error: str | None = None
    resume: bool = False  # continue the run from its checkpoint instead of starting it


def zero_gpu_available() -> bool:
    """True on a ZeroGPU Space: the `spaces` package is importable and the Space runs on ZeroGPU."""
    if not os.environ.get("SPACES_ZERO_GPU"):
        return False
    try:
        import spaces  # noqa: F401
    except ImportError:
        return False
    return True


def detect_devices() -> list[str]:
    if zero_gpu_available():
        return ["zerogpu"]
    try:
        import torch

        if torch.cuda.is_available():
            return ["cuda"]
    except ImportError:  # pragma: no cover - torch is a hard dependency of lrc
        pass
    return ["cpu"]


def run_in_process(cfg: DistillConfig, run: Run, should_stop: Callable[[], bool], store: RunStore) -> None:
    """The default runner: drive lrc's pipeline to the end (it writes every event to the run folder)."""
    from lrc.pipeline import run_distill

    for _event in run_distill(cfg, run, should_stop, store=store):
        pass


def zero_gpu_runner(seconds: int | None = None) -> Runner:
    """A runner whose GPU work happens inside one `spaces.GPU` call that fits the ZeroGPU time limit."""
    import spaces

    budget = int(seconds or os.environ.get("LRC_ZEROGPU_SECONDS", 110))
    margin = min(20, max(5, budget // 6))  # time left for the final eval and the save after the stop request

    @spaces.GPU(duration=budget)
    def gpu_chunk(cfg_dict: dict[str, Any], run_path: str, store_root: str) -> None:
        from pathlib import Path

        from lrc.pipeline import run_distill

        started = time.monotonic()
        run = Run(Path(run_path))
        stop_file = run.path / STOP_FILE

        def should_stop() -> bool:
            return stop_file.exists() or time.monotonic() - started > budget - margin

        for _event in run_distill(DistillConfig.from_dict(cfg_dict), run, should_stop, store=RunStore(store_root)):
            pass

    def runner(cfg: DistillConfig, run: Run, should_stop: Callable[[], bool], store: RunStore) -> None:
        gpu_chunk(cfg.to_dict(), str(run.path), str(store.root))

    return runner


class JobManager:
    """A FIFO of distillation requests served by one background worker thread per device."""

    def __init__(self, store: RunStore, devices: list[str] | None = None, runner: Runner | None = None,
                 max_queue: int = 20):
        self.store = store
        self._devices = devices
        self._runner = runner
        self.max_queue = max_queue
        self._cv = threading.Condition()
        self._waiting: list[Job] = []
        self._jobs: dict[str, Job] = {}
        self._workers: list[threading.Thread] = []
        self._closed = False
        if devices is None and runner is None and zero_gpu_available():
            # ZeroGPU wants its GPU functions declared while the app starts, not on the first request
            self._devices, self._runner = ["zerogpu"], zero_gpu_runner()

    # ---- devices and workers -------------------------------------------------------------------------------
    @property
    def devices(self) -> list[str]:
        if self._devices is None:
            self._devices = detect_devices()
        return self._devices

    def _runner_for(self, device: str) -> Runner:
        if self._runner is not None:
            return self._runner
        if device == "zerogpu":
            self._runner = zero_gpu_runner()
            return self._runner
        return run_in_process

    def _ensure_workers(self) -> None:
        if self._workers:
            return
        for device in self.devices:
            t = threading.Thread(target=self._work, args=(device,), name=f"lrc-worker-{device}", daemon=True)
            t.start()
            self._workers.append(t)

    def close(self, timeout: float = 0) -> None:
        """Stop taking jobs; ask running jobs to stop (used by tests and on shutdown)."""
        with self._cv:
            self._closed = True
            for job in self._jobs.values():
                if job.state == "running":
                    job.stop_event.set()
            self._cv.notify_all()
        for t in self._workers:
            t.join(timeout)

    # ---- the queue -----------------------------------------------------------------------------------------
    def submit(self, cfg: DistillConfig, owner: str | None = None, run_id: str | None = None,
               **meta: Any) -> Run:
        """Validate, write the run folder as `queued`, and put the job at the back of the queue."""
        cfg.validate()
        with self._cv:
            if self._closed:
                raise LRCError("the app is shutting down; no new runs are taken")
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"the queue is full ({self.max_queue} runs waiting); try again when one has finished")
        run = self.store.create(cfg.to_dict(), run_id=run_id, kind="distill", owner=owner, source="app", **meta)
        # the app's pid: if the app dies before the run starts, the store shows the run as interrupted
        run.set_status("queued", pid=os.getpid(), queued=time.time())
        self._enqueue(Job(run.id, cfg, owner))
        return run

    def resume(self, run_id: str) -> Run:
        """Queue a stopped or interrupted run to continue from its latest checkpoint (same folder, same settings)."""
        from lrc.pipeline import prepare_resume

        run = self.store.get(run_id)
        if "zerogpu" in self.devices:  # each ZeroGPU call would need to chain checkpoints: not built (untestable here)
            raise LRCError("resuming is not available on a ZeroGPU Space yet; the stopped run's student is saved, "
                           "and `python -m lrc distill --resume` continues it on a machine with a GPU")
        with self._cv:
            if self._closed:
                raise LRCError("the app is shutting down; no new runs are taken")
            job = self._jobs.get(run.id)
            if job is not None and job.state in ("waiting", "running"):
                raise LRCError(f"run {run.id} is already {job.state}")
            if len(self._waiting) >= self.max_queue:
                raise QueueFull(f"the queue is full ({self.max_queue} runs waiting); try again when one has finished")
        prepare_resume(run)  # refuses finished or checkpoint-less runs; trims the events before anyone watches
        (run.path / STOP_FILE).unlink(missing_ok=True)
        self._enqueue(Job(run.id, DistillConfig.from_dict(run.config), run.meta.get("owner"), resume=True))
        return run

    def _enqueue(self, job: Job) -> None:
        with self._cv:
            self._waiting.append(job)
            self._jobs[job.run_id] = job
            self._cv.notify_all()
        self._ensure_workers()

    def stop(self, run_id: str) -> str:
        """Ask a run to stop. Returns what happened: cancelled | stopping | finished | unknown."""
        with self._cv:
            job = self._jobs.get(run_id)
            if job is not None and job.state == "waiting":
                self._waiting.remove(job)
                job.state, job.finished = "done", time.time()
                cancelled = True
            else:
                cancelled = False
            if job is not None and job.state == "running":
                job.stop_event.set()
        if cancelled:
            run = self.store.get(run_id)
            run.append_event({"type": "end", "status": "stopped", "step": 0, "message": "cancelled before it started"})
            run.set_status("stopped", message="cancelled before it started", finished=time.time())
            return "cancelled"
        try:
            run = self.store.get(run_id)
        except LRCError:
            return "unknown"
        if job is not None and job.state == "running":
            (run.path / STOP_FILE).touch()
            return "stopping"
        if run.status == "running":  # a run of another process (the CLI, a ZeroGPU child): the STOP file reaches it
            (run.path / STOP_FILE).touch()
            return "stopping"
        return "finished"

    def job(self, run_id: str) -> Job | None:
        with self._cv:
            return self._jobs.get(run_id)

    def is_active(self, run_id: str) -> bool:
        job = self.job(run_id)
        return job is not None and job.state in ("waiting", "running")

    def describe(self, run_id: str) -> dict[str, Any]:
        """Where a run stands in this app's queue: state, place in line (1 = next), runs ahead, device."""
        with self._cv:
            job = self._jobs.get(run_id)
            if job is None:
                return {"state": "unknown"}
            if job.state == "waiting":
                index = self._waiting.index(job)
                running = sum(1 for j in self._jobs.values() if j.state == "running")
                return {"state": "waiting", "position": index + 1, "ahead": index + running,
                        "waiting": len(self._waiting)}
            return {"state": job.state, "device": job.device, "stopping": job.stop_event.is_set(),
                    "error": job.error}

    def active(self) -> list[Job]:
        """Running jobs first, then waiting ones in queue order."""
        with self._cv:
            running = [j for j in self._jobs.values() if j.state == "running"]
            return running + list(self._waiting)

    def wait(self, run_id: str, timeout: float | None = None) -> bool:
        """Block until a job is done (tests and scripts); True if it finished within the timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cv:
            while True:
                job = self._jobs.get(run_id)
                if job is None or job.state == "done":
                    return True
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cv.wait(left if left is not None else 1.0)

    # ---- the worker ----------------------------------------------------------------------------------------
    def _work(self, device: str) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._closed:
                    self._cv.wait()
                if self._closed:
                    return
                job = self._waiting.pop(0)
                job.state, job.device, job.started = "running", device, time.time()
            try:
                self._execute(job, device)
            finally:
                with self._cv:
                    job.state, job.finished = "done", time.time()
                    self._cv.notify_all()

    def _execute(self, job: Job, device: str) -> None:
        try:
            run = self.store.get(job.run_id)
        except LRCError as exc:  # the folder was deleted while the job waited
            job.error = str(exc)
            return
        stop_file = run.path / STOP_FILE
        should_stop = lambda: job.stop_event.is_set() or stop_file.exists()  # noqa: E731
        cfg = job.config if device == "zerogpu" else job.config.override(device=device)
        try:
            if job.resume:
                from lrc.pipeline import resume_run

                for _event in resume_run(run, should_stop):
                    pass
            else:
                self._runner_for(device)(cfg, run, should_stop, self.store)
            if run.status not in TERMINAL:
                raise LRCError("the run ended without a final status")
        except Exception as exc:  # the pipeline already recorded most failures; make sure every one is
            job.error = str(exc) if isinstance(exc, LRCError) else f"{type(exc).__name__}: {exc}"
            if run.status not in TERMINAL:
                run.append_event({"type": "end", "status": "failed", "message": job.error})
                run.set_status("failed", message=job.error, finished=time.time(),
                               **({} if isinstance(exc, LRCError) else {"traceback": traceback.format_exc()}))
        finally:
            stop_file.unlink(missing_ok=True)
