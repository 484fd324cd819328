"""The driver side of a cluster Generator: the Ray engine (queue, dispatch, event relay, faults).

:class:`RayEngine` implements :class:`wan_nb.core.engine.Engine`. ``Generator.submit`` makes the task
and its run folder as always, then hands it here; the task is announced at once
(``generation_started`` with ``worker: null``, then ``generation_queued``) and waits on the
driver. A dispatcher thread gives each queued task to the best free worker
(:class:`~wan_nb.cluster.pool.WorkerPool`); one thread per running task reads the worker's
event batches (a Ray streaming generator) and publishes each event into the driver's sink with
the seq the worker gave it (the worker numbers on from the driver's last seq), so the journal,
the relay to Jupyter servers, the widgets and the CLI see a remote task exactly as a local one.
The worker's first event, ``generation_stage(initializing, "Starting")``, names it (``worker``). The video arrives
in the last batch and is written into the driver's run folder before ``generation_completed``
is published, with ``output_path`` naming the driver's copy.

Faults: a worker that dies fails only its task (``error_type: "WorkerLost"``, naming the host)
and is replaced; ``retries=`` re-submits such a task as a new one. The actors are owned by this
process, so when it exits or disconnects Ray ends them and their GPU work with it.
"""

from __future__ import annotations

import collections
import logging
import threading
from pathlib import Path
from typing import Any, Callable

from wan_nb.core.run import RunContext, event_params
from wan_nb.core.engine import Engine, queue_fields
from wan_nb.protocol.errors import ClusterUnavailable, GenerationCancelled, GenerationError, TaskNotQueued
from wan_nb.protocol.events import Event, EventType, Stage
from wan_nb.core.params import public_params
from wan_nb.core import lora_schedule
from wan_nb.runs.layout import VIDEO_NAME
from wan_nb.core.task import Result, Task
from .loras import LoraShipper
from .pool import Slot, WorkerPool, actor_class, control
from .worker import BATCH_INTERVAL, generation_kwargs

__all__ = ["RayEngine", "ClusterBackend", "RemoteTask", "WORKER_LOST"]

log = logging.getLogger(__name__)

WORKER_LOST = "WorkerLost"


class RemoteTask(Task):
    """A task run by a Ray worker. ``retry``: the task that re-runs it after its worker was lost."""

    engine: "RayEngine"

    def __init__(self, generator: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(generator, *args, **kwargs)
        self.retry: RemoteTask | None = None
        self.worker: dict[str, Any] | None = None
        # The engine's bookkeeping, kept on the task it is about: the worker slot running it (None
        # while it waits) and how many more times a lost worker's task is submitted again.
        self.slot: Slot | None = None
        self.retries_left = 0

    def _cancelled(self) -> None:
        """On its worker the step callback sees the cancel within one denoising step."""
        self.engine.cancel(self)

    def pause(self, release_memory: bool = False) -> bool:
        """Hold at the next denoising step on its worker (a task still waiting here cannot hold)."""
        return self.engine.steer(self, "pause", release_memory=bool(release_memory))

    def resume(self) -> bool:
        return self.engine.steer(self, "resume")

    def result(self, timeout: float | None = None) -> Result:
        """As :meth:`Task.result`; a task re-run after a lost worker answers with the re-run's result."""
        try:
            return super().result(timeout)
        except GenerationError:
            if self.retry is not None:
                return self.retry.result(timeout)
            raise


class RayEngine(Engine):
    """Runs a Generator's tasks on a pool of Ray actors (see the module docstring).

    ``ctx``: the generator's run context (sink, LoRA registry, spec and load options, on_ended);
    ``worker_options``: what each worker's own engine needs (monitor_interval, previews,
    preview_every); ``resubmit(prompt, **kwargs)``: the generator's submit, for ``retries=``.
    """

    task_class = RemoteTask

    def __init__(self, ctx: RunContext, ray: Any, *, model: Any, workers: int | None,
                 worker_options: dict[str, Any], resubmit: Callable[..., Task]) -> None:
        self.ctx = ctx
        self.ray = ray
        self._resubmit = resubmit
        spec, load = ctx.holder.spec, ctx.holder.options
        gpus = int(ray.cluster_resources().get("GPU", 0))
        on_cpu = str(load.device) == "cpu"
        if gpus == 0 and spec.builder is None and not on_cpu:
            raise ClusterUnavailable(
                f"model={spec.name!r} needs a GPU but the Ray cluster has none "
                f"({ray.cluster_resources().get('CPU', 0):g} CPUs). Add GPU nodes (ray start --address=... on "
                "a GPU machine), use model='tiny', or pass device='cpu' to run it on CPUs anyway (very slow).")
        self.count = workers or max(gpus, 1)
        resources = {"num_gpus": 1, "num_cpus": 1} if gpus and not on_cpu else {"num_cpus": 1}
        options = {"load": load.as_kwargs(), **worker_options}
        cls = actor_class(ray).options(max_restarts=0, **resources)
        model_name = str(model)
        self.pool = WorkerPool(ray, self.count, lambda worker_id: cls.remote(worker_id, model_name, options))
        self.batch_interval = BATCH_INTERVAL
        # One lock for the queue and its announcements: a task's last generation_queued is out
        # before a worker can number its events after it.
        self._lock = threading.RLock()
        self._pending: collections.deque[RemoteTask] = collections.deque()
        self._wake = threading.Condition(self._lock)
        self._positions: dict[str, dict[str, int]] = {}
        self._active: dict[str, RemoteTask] = {}  # submitted here and not ended
        self._paused = False
        self._dispatching: RemoteTask | None = None  # popped from the queue, waiting for a free worker
        self._loras = LoraShipper(ray, ctx.loras, experts=len(ctx.holder.spec.experts))
        self._drivers: set[threading.Thread] = set()
        self._closed = False
        self._dispatcher = threading.Thread(target=self._dispatch, name="wan_nb-cluster-dispatch", daemon=True)
        self._dispatcher.start()

    # -- Engine --------------------------------------------------------------------------------
    def submit(self, task: RemoteTask, *, retries: int = 0, started: dict[str, Any] | None = None) -> RemoteTask:
        task.retries_left = int(retries)
        sink = self.ctx.sink
        with self._wake:
            self._active[task.id] = task
            if started is not None:
                sink.publish(task.id, EventType.GENERATION_STARTED, **started, worker=None)
            fields = self._positions[task.id] = queue_fields(len(self._pending), self._ahead_running())
            sink.publish(task.id, EventType.GENERATION_QUEUED, **fields)
            self._pending.append(task)
            self._wake.notify_all()
        return task

    enqueue = submit  # the first version's name

    @property
    def running(self) -> list[RemoteTask]:
        with self._lock:
            return [t for t in self._active.values() if t.slot is not None]

    def pause(self) -> None:
        with self._wake:
            self._paused = True

    def resume(self) -> None:
        with self._wake:
            self._paused = False
            self._wake.notify_all()

    @property
    def paused(self) -> bool:
        return self._paused

    def run_on_worker(self, fn: Callable[[Any], Any], timeout: float | None = None) -> Any:
        raise RuntimeError("run_on_worker: with cluster= the pipelines live on the Ray workers")

    def _ahead_running(self) -> int:
        """Tasks that run before every waiting one: the running ones and the one being dispatched."""
        return len(self.running) + (self._dispatching is not None)

    def _announce_positions(self) -> None:
        """A ``generation_queued`` for every waiting task whose place changed (under the lock)."""
        with self._lock:
            running = self._ahead_running()
            now = {}
            for position, task in enumerate(self._pending):
                fields = now[task.id] = queue_fields(position, running)
                if self._positions.get(task.id) != fields:
                    self.ctx.sink.publish(task.id, EventType.GENERATION_QUEUED, **fields)
            self._positions = now

    def cancel(self, task: RemoteTask) -> None:
        with self._lock:
            if task in self._pending:
                self._pending.remove(task)
                waiting = True
                self._announce_positions()
            else:
                waiting, slot = False, task.slot
        if waiting:
            self._end_here(task, "cancelled", None)
        elif slot is not None:
            control(slot.actor.steer).remote(task.id, "cancel")
        else:
            self.pool.notify()  # the dispatcher is choosing its worker: it sees the flag and stops

    def steer(self, task: RemoteTask, action: str, **kw: Any) -> bool:
        """Pause or resume a task on its worker; the worker's answer (False where it cannot)."""
        with self._lock:
            slot = task.slot
        if slot is None or task.done():
            return False
        try:
            return bool(self.ray.get(control(slot.actor.steer).remote(task.id, action, **kw), timeout=30))
        except Exception:
            return False  # the worker is gone or busy dying: its task reports that itself

    def move(self, task: RemoteTask, index: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"move(index={index!r}): give an int (0 goes next, -1 last)")
        with self._lock:
            if task not in self._pending:
                raise TaskNotQueued(task.id, task.status)
            self._pending.remove(task)
            place = len(self._pending) + 1 + index if index < 0 else index
            self._pending.insert(max(0, min(place, len(self._pending))), task)
            self._announce_positions()

    @property
    def queued(self) -> list[RemoteTask]:
        with self._lock:
            return list(self._pending)

    def close(self, timeout: float = 30.0) -> None:
        """Cancel what is queued or running, then end the actors."""
        with self._wake:
            self._closed = True
            pending, self._pending = list(self._pending), collections.deque()
            self._wake.notify_all()
            drivers = list(self._drivers)
        for task in pending:
            self._end_here(task, "cancelled", None)
        with self._lock:
            running = [t for t in self._active.values() if not t.done()]
        for task in running:
            task.cancel()
        for thread in drivers:
            thread.join(timeout)
        self.pool.close()

    # -- dispatch ------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        """Hand the queue's head to the best free worker, one task after another."""
        while True:
            with self._wake:
                while (not self._pending or self._paused) and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                task = self._pending.popleft()
                self._positions.pop(task.id, None)
                self._dispatching = task  # ahead of everyone still waiting, as if running
                self._announce_positions()  # everyone behind it moved up
            try:
                loras = self._loras.spec()
            except Exception as exc:  # a LoRA file gone from the driver's disk: this task cannot run
                with self._lock:
                    self._dispatching = None
                    self._announce_positions()
                self._end_here(task, "failed", None, error_type=type(exc).__name__, error=str(exc))
                continue
            signature = tuple(sorted((n, e["key"], lora_schedule.key(e["weight"])) for n, e in loras.items()))  # hashable
            slot = self.pool.acquire(signature, cancelled=lambda: task.cancel_requested or self._closed)
            with self._lock:
                self._dispatching = None
                task.slot = slot
            if slot is None:
                self._end_here(task, "cancelled", None)
                with self._lock:
                    self._announce_positions()  # it no longer runs before the others
                continue
            thread = threading.Thread(target=self._drive, args=(task, slot, loras, signature),
                                      name=f"wan_nb-cluster-{task.id}", daemon=True)
            with self._lock:
                self._drivers.add(thread)
            thread.start()

    def _drive(self, task: RemoteTask, slot: Slot, loras: dict[str, Any], signature: tuple) -> None:
        spec = {"task_id": task.id, "prompt": task.prompt, "parent_id": task.parent_id,
                "kwargs": generation_kwargs(task.params), "loras": loras, "batch_interval": self.batch_interval,
                "seq_after": self.ctx.sink.last_seq(task.id)}  # the worker numbers on from here
        lost: BaseException | None = None
        try:
            if task.cancel_requested:
                control(slot.actor.steer).remote(task.id, "cancel")
            stream = slot.actor.run.options(num_returns="streaming").remote(spec)
            for ref in stream:
                self._absorb(task, slot, self.ray.get(ref))
        except self.ray.exceptions.RayActorError as exc:
            lost = exc
        except Exception as exc:  # a bug or a Ray error outside the worker's own error handling
            log.debug("cluster task %s failed on the driver side", task.id, exc_info=True)
            if not task.done():
                self._end_here(task, "failed", self.pool.info(slot), error_type=type(exc).__name__, error=str(exc))
        finally:
            if lost is not None:
                self._worker_lost(task, slot, lost)
            elif not task.done():
                self._end_here(task, "failed", self.pool.info(slot), error_type="RuntimeError",
                               error="the worker's event stream ended before the task did")
                self.pool.release(slot, loaded=False, loras=signature)
            else:
                self.pool.release(slot, loaded=task.status == "completed", loras=signature)
            with self._lock:
                task.slot = None
                self._drivers.discard(threading.current_thread())
                self._announce_positions()

    # -- events --------------------------------------------------------------------------------
    def _absorb(self, task: RemoteTask, slot: Slot, batch: dict[str, Any]) -> None:
        local_video = None
        if batch.get("video") is not None:
            local_video = task.run_dir / VIDEO_NAME
            partial = local_video.with_name("video.mp4.part")
            partial.write_bytes(batch["video"])
            partial.replace(local_video)
        for frame in batch.get("events", ()):
            event = Event.from_frame(frame)
            if event.type == EventType.GENERATION_STAGE and event.data.get("worker"):
                slot.info = task.worker = dict(event.data["worker"])
            elif event.type == EventType.GENERATION_COMPLETED and local_video is not None:
                data = dict(event.data, output_path=str(local_video))
                event = Event(type=event.type, task_id=event.task_id, seq=event.seq,
                              timestamp=event.timestamp, data=data)
            track(task, event.type, event.data, local_video, self.ctx.model)
            self.ctx.sink.publish_event(event)
            if event.is_terminal:
                self._finish(task)
        if batch.get("error") and not task.done():
            error = batch["error"]
            self._end_here(task, "failed", self.pool.info(slot), error_type=error["type"], error=error["message"])

    def _finish(self, task: RemoteTask) -> None:
        with self._lock:
            self._active.pop(task.id, None)
        self.ctx.on_ended(task)  # journal closed, off the queue file, then done

    def _end_here(self, task: RemoteTask, outcome: str, worker: dict[str, Any] | None, *,
                  error_type: str = "", error: str = "", **extra: Any) -> None:
        """End a task the worker could not end itself (never reached one, or the worker died)."""
        with self._lock:
            if task.done():
                return
            bus = self.ctx.sink
            if bus.last_seq(task.id) == 0:  # never announced (closed at once): its stream starts here
                bus.publish(task.id, EventType.GENERATION_STARTED, model_type=self.ctx.model,
                            params=event_params(task), estimated_duration=None, worker=worker)
            stage = task.stage
            if outcome == "cancelled":
                data = {"stage": stage, "current_step": task.current_step}
                track(task, EventType.GENERATION_CANCELLED, data, None, self.ctx.model)
                bus.publish(task.id, EventType.GENERATION_STAGE, stage=Stage.CANCELLED.value, stage_progress=0.0,
                            stage_message=f"Cancelled during {stage}")
                bus.publish(task.id, EventType.GENERATION_CANCELLED, **data)
            else:
                data = {"stage": stage, "error_type": error_type, "error": error,
                        **({"worker": worker} if worker else {})}
                track(task, EventType.GENERATION_FAILED, data, None, self.ctx.model)
                bus.publish(task.id, EventType.GENERATION_STAGE, stage=Stage.FAILED.value, stage_progress=0.0,
                            stage_message=f"{error_type}: {error}")
                bus.publish(task.id, EventType.GENERATION_FAILED, **data, **extra)
            self._finish(task)

    def _worker_lost(self, task: RemoteTask, slot: Slot, exc: BaseException) -> None:
        info = slot.info or self.pool.info(slot) or {}
        where = f"on {info['host']} (pid {info['pid']})" if info else "before it reported its host"
        message = (f"the Ray worker {slot.worker_id} {where} died during {task.stage}: "
                   f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        self.pool.replace(slot)
        extra: dict[str, Any] = {}
        if task.retries_left > 0 and not self._closed and not task.cancel_requested:
            retry = self._resubmit(task.prompt, parent_id=task.parent_id, retries=task.retries_left - 1,
                                   **generation_kwargs(task.params))
            task.retry = retry
            extra["retry_task_id"] = retry.id
            message += f"; re-running it as task {retry.id}"
        self._end_here(task, "failed", info or None, error_type=WORKER_LOST, error=message, **extra)


def track(task: RemoteTask, type: str, data: Any, video: Path | None, model: str) -> None:
    """Keep the driver's Task object as current as a local one (status, stage, progress)."""
    if type == EventType.GENERATION_STAGE:
        task.stage = data.get("stage", task.stage)
        if task.status == "queued":  # the worker's first stage ("Starting") is its start
            task.status = "running"
    elif type == EventType.DETAILED_GENERATION_PROGRESS:
        task.progress = float(data.get("progress", task.progress))
        task.current_step = int(data.get("current_step") or task.current_step)
        task.status = "running" if task.status == "queued" else task.status
    elif type == EventType.GENERATION_PAUSED:
        task.status = "paused"
    elif type == EventType.GENERATION_RESUMED:
        task.status = "running"
    elif type == EventType.GENERATION_COMPLETED:
        task.stage = Stage.COMPLETED.value
        task.set_outcome("completed", result=Result(
            task_id=task.id, video_path=video or Path(data["output_path"]), params=public_params(task.params),
            seed=task.seed, model=model, duration_s=float(data.get("duration_s") or 0.0),
            run_dir=task.run_dir))
    elif type == EventType.GENERATION_FAILED:
        task.stage = Stage.FAILED.value
        message = f"{data.get('error_type')} during {data.get('stage')}: {data.get('error')}"
        task.set_outcome("failed", error=GenerationError(message, task_id=task.id, stage=data.get("stage", ""),
                                                         error_type=data.get("error_type", "Error")))
    elif type == EventType.GENERATION_CANCELLED:
        task.stage = Stage.CANCELLED.value
        task.set_outcome("cancelled", error=GenerationCancelled(task.id, data.get("stage", ""),
                                                                int(data.get("current_step") or 0)))


ClusterBackend = RayEngine  # the first version's name
