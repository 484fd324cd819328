"""The Ray actor side: one pipeline worker, hosting a local engine (no Generator of its own).

A worker (:class:`WorkerHost` inside :class:`PipelineWorker`) holds the pipeline (loaded once,
kept between tasks), the LoRAs the driver shipped, and a :class:`~wan_nb.core.local_engine.LocalEngine`
that runs one task at a time under the driver's task id. It streams that task's events back
with Ray's streaming generators: each ``yield`` of :meth:`PipelineWorker.run` is one batch of
event frames, at most one per ``interval`` seconds, so a fast step rate costs the driver one Ray
object per 50 ms, not one per event. The events are numbered on from the driver's last seq
(the driver announced the task and its queue place), and the first one,
``generation_stage(initializing, "Starting")``, carries ``worker`` (id, host, pid, device). The
last batch also carries the video's bytes, since the driver may be on another machine.

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

from .. import previews
from wan_nb.core import eta
from wan_nb.models import specs as models
from wan_nb.core.lora_registry import LoraRegistry
from wan_nb.core.run import RunContext
from wan_nb.core.bus import EventBus, Unsubscribe
from wan_nb.core.engine import LoadOptions
from wan_nb.protocol.events import Event, EventType, Stage
from wan_nb.core.holder import PipelineHolder
from wan_nb.core.local_engine import LocalEngine
from wan_nb.core.params import GENERATION_ARGS, build_params
from wan_nb.core.task import Task

__all__ = ["PipelineWorker", "WorkerHost", "BATCH_INTERVAL", "generation_kwargs"]

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


class WorkerHost:
    """A worker's pipeline, LoRAs and engine, and the bus its tasks publish on.

    ``options``: ``load`` (the driver's :class:`~wan_nb.core.engine.LoadOptions` as a dict),
    ``monitor_interval``, ``previews``, ``preview_every``. Nothing here is relayed to Jupyter
    servers or journaled: the driver does that, under the same task ids.
    """

    def __init__(self, model: str, options: dict[str, Any], root: Path, name: str = "wan_nb-worker") -> None:
        self.root = root
        self.bus = EventBus()
        self.holder = PipelineHolder(models.resolve(model), LoadOptions(**options.get("load", {})))
        self.loras = LoraRegistry()
        ctx = RunContext(holder=self.holder, sink=self.bus,
                         timings=eta.TimingStore(models.cache_dir() / "timings.json"), loras=self.loras,
                         monitor_interval=float(options.get("monitor_interval", 1.0)))
        if options.get("previews", True):
            previews.install(self.bus, ctx.step_hooks.append, options.get("preview_every"), model=self.holder.model)
        self.engine = LocalEngine(ctx, self, name=name, announce=False)

    def subscribe(self, callback: Any, *, task_id: str | None = None, types: Any = None,
                  replay: bool = False) -> Unsubscribe:
        return self.bus.subscribe(callback, task_id=task_id, types=types, replay=replay)

    def submit(self, task_id: str, prompt: str, kwargs: dict[str, Any], *, parent_id: str | None = None,
               seq_after: int = 0) -> Task:
        """Run the driver's task ``task_id`` here, its events numbered after ``seq_after``."""
        params = build_params(self.holder.spec, prompt, kwargs, known_loras=self.loras.entries)
        if params["image"] is not None:
            params["image"] = models.prepare_image(params["image"], params["height"], params["width"])
        run_dir = self.root / "runs" / task_id
        run_dir.mkdir(parents=True, exist_ok=True)
        self.bus.continue_seq(task_id, seq_after)
        task = Task(self, task_id, params, run_dir, parent_id=parent_id, engine=self.engine)
        return self.engine.submit(task)  # no generation_started / queued: the driver announced it

    def load_lora(self, source: Any, name: str, weight: float, **options: Any) -> None:
        with self.holder.lock:
            self.loras.load(source, name, weight, self.holder.pipe, experts=options.get("experts"),
                            model_experts=self.holder.spec.experts)

    def unload_lora(self, name: str) -> None:
        with self.holder.lock:
            self.loras.unload(name, self.holder.pipe)


class PipelineWorker:
    """One Ray actor: a :class:`WorkerHost` and the task it runs now."""

    def __init__(self, worker_id: str, model: str, options: dict[str, Any]) -> None:
        self._root = Path(tempfile.mkdtemp(prefix="wan_nb-worker-"))
        self.host = WorkerHost(model, options, self._root, name=f"wan_nb-worker-{worker_id}")
        self.info = {"id": worker_id, "host": socket.gethostname(), "pid": os.getpid(),
                     "device": _describe_device(options.get("device", "auto"), options.get("dtype", "auto"))}
        self._lock = threading.Lock()
        self._running_id: str | None = None
        self._running_task: Any = None
        self._cancelled: set[str] = set()
        self._lora_files: dict[str, tuple[str, float]] = {}  # name -> (source, weight) attached here

    # -- control group -----------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        return dict(self.info, loaded=self.host.holder.loaded, loras=sorted(self._lora_files))

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
        remove_sink = self.host.bus.add_sink(outbox)
        with self._lock:
            self._running_id, self._running_task = task_id, None
        try:
            try:
                self._sync_loras(spec.get("loras") or {})
                task = self.host.submit(task_id, spec["prompt"], spec["kwargs"], parent_id=spec.get("parent_id"),
                                        seq_after=int(spec.get("seq_after", 0)))
            except Exception as exc:  # before any event: the driver reports it in the task's stream
                yield {"events": [self._frame(e) for e in outbox.take()],
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
                    yield {"events": [self._frame(e) for e in events + outbox.take()],
                           "video": self._video_bytes(task)}
                    self._forget(task)
                    return
                if events:
                    yield {"events": [self._frame(e) for e in events]}
                    next_send = time.monotonic() + interval
        finally:
            remove_sink()
            with self._lock:
                self._running_id, self._running_task = None, None
                self._cancelled.discard(task_id)

    def _frame(self, event: Event) -> dict[str, Any]:
        frame = event.to_frame()
        data = frame["data"]
        if event.type == EventType.GENERATION_STAGE and data.get("stage") == Stage.INITIALIZING.value \
                and data.get("stage_message") == "Starting":
            data["worker"] = dict(self.info)  # the task's start here: which worker took it
        return frame

    def _video_bytes(self, task: Any) -> bytes | None:
        if task.status != "completed":
            return None
        return Path(task.result().video_path).read_bytes()

    def _forget(self, task: Any) -> None:
        """The driver keeps the run folder; the worker's copy only costs disk."""
        shutil.rmtree(task.run_dir, ignore_errors=True)

    def _sync_loras(self, wanted: dict[str, dict[str, Any]]) -> None:
        """Attach the driver's LoRAs here (once each) and drop the ones it unloaded."""
        for name in [n for n, held in self._lora_files.items()
                     if n not in wanted or held != (wanted[n]["key"], wanted[n]["weight"])]:
            self.host.unload_lora(name)
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
            self.host.load_lora(source, name=name, weight=entry["weight"], **options)
            self._lora_files[name] = (entry["key"], entry["weight"])


def _ray_get(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    import ray

    return ray.get(value)


def _describe_device(device: str, dtype: Any) -> str:
    """``cuda:<gpu index on this node> <name>`` or ``cpu``, for the worker field of events."""
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
