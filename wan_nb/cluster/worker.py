"""The Ray actor side: one pipeline worker, holding its own local wan_nb Generator.

A worker runs one task at a time on the local generator (model loaded once, kept between tasks)
and streams that task's events back with Ray's streaming generators: each ``yield`` of
:meth:`PipelineWorker.run` is one batch of event frames, at most one per ``interval`` seconds,
so a fast step rate costs the driver one Ray object per 50 ms, not one per event. The events
keep the seq the local bus gave them; the driver renames only the task id. The last batch also
carries the video's bytes, since the driver may be on another machine.

Control calls (``steer``, ``describe``) run in their own concurrency group, beside a running
``run``: a cancel reaches the local task's step callback within one denoising step.

This module is imported inside Ray worker processes (and by the driver to build the actor
class); it imports Ray only there.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from ..events import Event, EventType
from ..params import GENERATION_ARGS

__all__ = ["PipelineWorker", "BATCH_INTERVAL", "generation_kwargs"]

BATCH_INTERVAL = 0.05   # seconds between two batches of one task's events (one Ray object each)


def generation_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    """The arguments that reproduce a resolved parameter set (seed included) on another process."""
    return {k: params[k] for k in GENERATION_ARGS if k in params}


class _Outbox:
    """A bus sink that collects the worker's events until the next batch is sent."""

    def __init__(self) -> None:
        self._events: list[Event] = []
        self._cond = threading.Condition()

    def __call__(self, event: Event) -> None:
        with self._cond:
            self._events.append(event)
            self._cond.notify()

    def wait(self, timeout: float) -> None:
        with self._cond:
            if not self._events:
                self._cond.wait(timeout)

    def take(self) -> list[Event]:
        with self._cond:
            events, self._events = self._events, []
            return events


class PipelineWorker:
    """One Ray actor: a local Generator and the task it runs now."""

    def __init__(self, worker_id: str, model: str, options: dict[str, Any]) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="wan_nb-worker-"))
        # Jupyter servers on this node must not list the worker's copy of a task: its events reach
        # them through the driver, under the driver's task id. A private runtime dir hides it.
        os.environ["JUPYTER_RUNTIME_DIR"] = str(self._root / "jupyter-runtime")
        from ..generator import Generator

        self.gen = Generator(model=model, runs_dir=self._root / "runs", **options)
        self.info = {"id": worker_id, "host": socket.gethostname(), "pid": os.getpid(),
                     "device": _describe_device(options.get("device", "auto"), options.get("dtype", "auto"))}
        self._lock = threading.Lock()
        self._running_id: str | None = None
        self._running_task: Any = None
        self._cancelled: set[str] = set()
        self._lora_files: dict[str, tuple[str, float]] = {}  # name -> (source, weight) attached here

    # -- control group -----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return dict(self.info, loaded=self.gen.pipeline is not None, loras=sorted(self._lora_files))

    def steer(self, task_id: str, action: str, **kw: Any) -> bool:
        """``cancel``, ``pause`` or ``resume`` the driver's task ``task_id`` if it runs here.

        A cancel that arrives before its task has started here is kept and applied when it starts.
        """
        with self._lock:
            task = self._running_task if self._running_id == task_id else None
            if task is None:
                if action == "cancel":
                    self._cancelled.add(task_id)
                    return True
                return False
        if action == "pause":
            return bool(task.pause(**kw))
        return bool(getattr(task, action)())

    # -- the work ----------------------------------------------------------------------------
    def run(self, spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Run one task; yield ``{"events": [frames]}`` batches, the last with ``"video"``."""
        task_id = spec["task_id"]
        interval = float(spec.get("batch_interval", BATCH_INTERVAL))
        outbox = _Outbox()
        remove_sink = self.gen.bus.add_sink(outbox)
        with self._lock:
            self._running_id, self._running_task = task_id, None
        try:
            try:
                self._sync_loras(spec.get("loras") or {})
                task = self.gen.submit(spec["prompt"], parent_id=spec.get("parent_id"), **spec["kwargs"])
            except Exception as exc:  # before any event: the driver reports it in the task's stream
                yield {"events": [self._frame(e, task_id) for e in outbox.take()],
                       "error": {"type": type(exc).__name__, "message": str(exc) or type(exc).__name__}}
                return
            with self._lock:
                self._running_task = task
                if task_id in self._cancelled:
                    task.cancel()
            next_send = 0.0
            while True:
                outbox.wait(timeout=1.0)
                pause = next_send - time.monotonic()
                if pause > 0:
                    time.sleep(pause)  # let this batch gather what the next 50 ms publish
                events = outbox.take()
                if any(e.is_terminal for e in events):
                    task.wait()
                    yield {"events": [self._frame(e, task_id) for e in events + outbox.take()],
                           "video": self._video_bytes(task)}
                    self._forget(task)
                    return
                if events:
                    yield {"events": [self._frame(e, task_id) for e in events]}
                    next_send = time.monotonic() + interval
        finally:
            remove_sink()
            with self._lock:
                self._running_id, self._running_task = None, None
                self._cancelled.discard(task_id)

    def _frame(self, event: Event, task_id: str) -> dict[str, Any]:
        frame = event.to_frame()
        frame["task_id"] = frame["data"]["task_id"] = task_id
        if event.type == EventType.GENERATION_STARTED:
            frame["data"]["worker"] = dict(self.info)
        return frame

    def _video_bytes(self, task: Any) -> bytes | None:
        if task.status != "completed":
            return None
        return Path(task.result().video_path).read_bytes()

    def _forget(self, task: Any) -> None:
        """The driver keeps the run folder; the worker's copy only costs disk."""
        shutil.rmtree(task.run_dir, ignore_errors=True)
        self.gen._tasks.pop(task.id, None)

    def _sync_loras(self, wanted: dict[str, dict[str, Any]]) -> None:
        """Attach the driver's LoRAs here (once each) and drop the ones it unloaded."""
        for name in [n for n, held in self._lora_files.items()
                     if n not in wanted or held != (wanted[n]["key"], wanted[n]["weight"])]:
            self.gen.unload_lora(name)
            del self._lora_files[name]
        for name, entry in wanted.items():
            if name in self._lora_files:
                continue
            paths = []
            for shipped in entry["files"]:  # files on the driver's disk, shipped through Ray
                folder = self._root / "loras" / shipped["key"]
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / shipped["filename"]
                if not path.is_file():
                    path.write_bytes(_ray_get(shipped["data"]))
                paths.append(path)
            source = tuple(paths) if len(paths) > 1 else paths[0]
            options = {"experts": entry["experts"]} if entry.get("experts") else {}
            self.gen.load_lora(source, name=name, weight=entry["weight"], **options)
            self._lora_files[name] = (entry["key"], entry["weight"])


def _ray_get(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    import ray

    return ray.get(value)


def _describe_device(device: str, dtype: Any) -> str:
    """``cuda:<gpu index on this node> <name>`` or ``cpu``, for the worker field of events."""
    from .. import models

    try:
        resolved, _ = models.resolve_device_dtype(device, dtype)
    except Exception:
        resolved = str(device)
    if not str(resolved).startswith("cuda"):
        return str(resolved)
    import torch

    try:
        import ray

        ids = ray.get_gpu_ids()
    except Exception:
        ids = []
    index = ids[0] if ids else 0
    return f"cuda:{index} {torch.cuda.get_device_name(0)}"
