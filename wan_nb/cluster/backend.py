"""The driver side of a cluster Generator: queue, dispatch, event relay, results, faults.

``Generator.submit`` makes the task and its run folder as always, then hands it here instead of
to its own worker thread. A dispatcher thread gives each queued task to the best free worker
(:class:`~wan_nb.cluster.pool.WorkerPool`); one thread per running task reads the worker's
event batches (a Ray streaming generator) and publishes each event on the driver's bus with the
seq the worker gave it (:meth:`EventBus.publish_event`), so the journal, the relay to Jupyter
servers, the widgets and the CLI see a remote task exactly as a local one. The video arrives
in the last batch and is written into the driver's run folder before ``generation_completed``
is published, with ``output_path`` naming the driver's copy.

Faults: a worker that dies fails only its task (``error_type: "WorkerLost"``, naming the host)
and is replaced; ``retries=`` re-submits such a task as a new one. The actors are owned by this
process, so when it exits or disconnects Ray ends them and their GPU work with it.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
from pathlib import Path
from typing import Any

from .._run import event_params
from ..errors import GenerationCancelled, GenerationError, TaskNotQueued
from ..events import Event, EventType, Stage
from ..params import public_params
from ..task import Result, Task
from . import ClusterUnavailable
from .pool import Slot, WorkerPool, actor_class, control
from .worker import BATCH_INTERVAL, generation_kwargs

__all__ = ["ClusterBackend", "RemoteTask", "WORKER_LOST"]

log = logging.getLogger(__name__)

WORKER_LOST = "WorkerLost"


class RemoteTask(Task):
    """A task run by a Ray worker. ``retry``: the task that re-runs it after its worker was lost."""

    def __init__(self, generator: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(generator, *args, **kwargs)
        self.retry: RemoteTask | None = None
        self.worker: dict[str, Any] | None = None
        self._backend: ClusterBackend = generator._cluster
        self._slot: Slot | None = None
        self._retries_left = 0

    def _cancelled(self) -> None:
        """On its worker the step callback sees the cancel within one denoising step."""
        self._backend.cancel(self)

    def pause(self, release_memory: bool = False) -> bool:
        """Hold at the next denoising step on its worker (a task still waiting here cannot hold)."""
        return self._backend.steer(self, "pause", release_memory=bool(release_memory))

    def resume(self) -> bool:
        return self._backend.steer(self, "resume")

    def move(self, index: int) -> None:
        """Change its place among the tasks waiting for a worker: 0 goes next, -1 last."""
        self._backend.move(self, index)

    def result(self, timeout: float | None = None) -> Result:
        """As :meth:`Task.result`; a task re-run after a lost worker answers with the re-run's result."""
        try:
            return super().result(timeout)
        except GenerationError:
            if self.retry is not None:
                return self.retry.result(timeout)
            raise


class ClusterBackend:
    """Runs a Generator's tasks on a pool of Ray actors (see the module docstring)."""

    task_class = RemoteTask

    def __init__(self, generator: Any, ray: Any, *, model: Any, workers: int | None) -> None:
        self.gen = generator
        self.ray = ray
        gpus = int(ray.cluster_resources().get("GPU", 0))
        on_cpu = str(generator.device_request) == "cpu"
        if gpus == 0 and generator.spec.builder is None and not on_cpu:
            raise ClusterUnavailable(
                f"model={generator.model!r} needs a GPU but the Ray cluster has none "
                f"({ray.cluster_resources().get('CPU', 0):g} CPUs). Add GPU nodes (ray start --address=... on "
                "a GPU machine), use model='tiny', or pass device='cpu' to run it on CPUs anyway (very slow).")
        self.count = workers or max(gpus, 1)
        resources = {"num_gpus": 1, "num_cpus": 1} if gpus and not on_cpu else {"num_cpus": 1}
        options = dict(device=generator.device_request, dtype=generator.dtype_request,
                       offload=generator.offload, vae_tiling=generator.vae_tiling,
                       vae_slicing=generator.vae_slicing, monitor_interval=generator.monitor_interval,
                       previews=generator.previews, preview_every=generator.preview_every,
                       **generator.weights.as_arguments())
        cls = actor_class(ray).options(max_restarts=0, **resources)
        model_name = str(model)
        self.pool = WorkerPool(ray, self.count, lambda worker_id: cls.remote(worker_id, model_name, options))
        self.batch_interval = BATCH_INTERVAL
        self._lock = threading.RLock()
        self._pending: collections.deque[RemoteTask] = collections.deque()
        self._wake = threading.Condition(self._lock)
        self._lora_refs: dict[str, Any] = {}
        self._drivers: set[threading.Thread] = set()
        self._closed = False
        self._dispatcher = threading.Thread(target=self._dispatch, name="wan_nb-cluster-dispatch", daemon=True)
        self._dispatcher.start()

    # -- called by the Generator ---------------------------------------------------------------
    def enqueue(self, task: RemoteTask, retries: int = 0) -> RemoteTask:
        task._retries_left = int(retries)
        with self._wake:
            self._pending.append(task)
            self._wake.notify_all()
        return task

    def cancel(self, task: RemoteTask) -> None:
        with self._lock:
            if task in self._pending:
                self._pending.remove(task)
                waiting = True
            else:
                waiting, slot = False, task._slot
        if waiting:
            self._end_here(task, "cancelled", None)
        elif slot is not None:
            control(slot.actor.steer).remote(task.id, "cancel")
        else:
            self.pool.notify()  # the dispatcher is choosing its worker: it sees the flag and stops

    def steer(self, task: RemoteTask, action: str, **kw: Any) -> bool:
        """Pause or resume a task on its worker; the worker's answer (False where it cannot)."""
        with self._lock:
            slot = task._slot
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
            task._cancel.set()
            self._end_here(task, "cancelled", None)
        for task in list(self.gen._tasks.values()):
            if isinstance(task, RemoteTask) and not task.done():
                task.cancel()
        for thread in drivers:
            thread.join(timeout)
        self.pool.close()

    # -- dispatch ------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        while True:
            with self._wake:
                while not self._pending and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                task = self._pending.popleft()
            try:
                loras = self._lora_spec()
            except Exception as exc:  # a LoRA file gone from the driver's disk: this task cannot run
                self._end_here(task, "failed", None, error_type=type(exc).__name__, error=str(exc))
                continue
            signature = tuple(sorted((n, e["key"], e["weight"]) for n, e in loras.items()))
            slot = self.pool.acquire(signature, cancelled=lambda: task.cancel_requested or self._closed)
            if slot is None:
                self._end_here(task, "cancelled", None)
                continue
            with self._lock:
                task._slot = slot
            thread = threading.Thread(target=self._drive, args=(task, slot, loras, signature),
                                      name=f"wan_nb-cluster-{task.id}", daemon=True)
            with self._lock:
                self._drivers.add(thread)
            thread.start()

    def _lora_spec(self) -> dict[str, dict[str, Any]]:
        """The generator's LoRAs as the workers need them: the weights files travel through Ray."""
        spec = {}
        for name, entry in list(self.gen._loras.entries.items()):
            # {component: LoraState}: one file for every expert it goes into, or a (high, low) pair
            state = entry.state if isinstance(entry.state, dict) else {"transformer": entry.state}
            paths = list(dict.fromkeys(Path(s.path) for s in state.values()))
            experts = None
            if len(paths) == 1 and len(self.gen.spec.experts) >= 2:
                experts = "both" if len(state) == 2 else ("high" if "transformer" in state else "low")
            files = [self._ship(path) for path in paths]
            spec[name] = {"source": entry.source, "weight": entry.weight, "experts": experts, "files": files,
                          "key": "+".join(f["key"] for f in files)}
        return spec

    def _ship(self, path: Path) -> dict[str, Any]:
        stat = path.stat()
        key = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        if key not in self._lora_refs:
            self._lora_refs[key] = self.ray.put(path.read_bytes())
        return {"key": key, "filename": path.name, "data": self._lora_refs[key]}

    def _drive(self, task: RemoteTask, slot: Slot, loras: dict[str, Any], signature: tuple) -> None:
        spec = {"task_id": task.id, "prompt": task.prompt, "parent_id": task.parent_id,
                "kwargs": generation_kwargs(task.params), "loras": loras, "batch_interval": self.batch_interval}
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
                task._slot = None
                self._drivers.discard(threading.current_thread())

    # -- events --------------------------------------------------------------------------------
    def _absorb(self, task: RemoteTask, slot: Slot, batch: dict[str, Any]) -> None:
        local_video = None
        if batch.get("video") is not None:
            local_video = task.run_dir / "video.mp4"
            partial = local_video.with_name("video.mp4.part")
            partial.write_bytes(batch["video"])
            partial.replace(local_video)
        for frame in batch.get("events", ()):
            event = Event.from_frame(frame)
            if event.type == EventType.GENERATION_STARTED:
                slot.info = task.worker = dict(event.data.get("worker") or {})
            elif event.type == EventType.GENERATION_COMPLETED and local_video is not None:
                data = dict(event.data, output_path=str(local_video))
                event = Event(type=event.type, task_id=event.task_id, seq=event.seq,
                              timestamp=event.timestamp, data=data)
            self._track(task, event.type, event.data, local_video)
            self.gen.bus.publish_event(event)
            if event.is_terminal:
                self._finish(task)
        if batch.get("error") and not task.done():
            error = batch["error"]
            self._end_here(task, "failed", self.pool.info(slot), error_type=error["type"], error=error["message"])

    def _track(self, task: RemoteTask, type: str, data: Any, video: Path | None) -> None:
        """Keep the driver's Task object as current as a local one (status, stage, progress)."""
        if type == EventType.GENERATION_STAGE:
            task.stage = data.get("stage", task.stage)
            if task.status == "queued" and task.stage != Stage.INITIALIZING.value:
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
            task.status, task.stage = "completed", Stage.COMPLETED.value
            task._result = Result(task_id=task.id, video_path=video or Path(data["output_path"]),
                                  params=public_params(task.params), seed=task.seed, model=self.gen.model,
                                  duration_s=float(data.get("duration_s") or 0.0), run_dir=task.run_dir)
        elif type == EventType.GENERATION_FAILED:
            task.status, task.stage = "failed", Stage.FAILED.value
            message = f"{data.get('error_type')} during {data.get('stage')}: {data.get('error')}"
            task._error = GenerationError(message, task_id=task.id, stage=data.get("stage", ""),
                                          error_type=data.get("error_type", "Error"))
        elif type == EventType.GENERATION_CANCELLED:
            task.status, task.stage = "cancelled", Stage.CANCELLED.value
            task._error = GenerationCancelled(task.id, data.get("stage", ""), int(data.get("current_step") or 0))

    def _finish(self, task: RemoteTask) -> None:
        self.gen._task_ended(task)  # journal closed, off the queue file, then done

    def _end_here(self, task: RemoteTask, outcome: str, worker: dict[str, Any] | None, *,
                  error_type: str = "", error: str = "", **extra: Any) -> None:
        """End a task the worker could not end itself (never reached one, or the worker died)."""
        with self._lock:
            if task.done():
                return
            bus = self.gen.bus
            if bus.last_seq(task.id) == 0:  # no worker spoke for it yet: its stream starts here
                bus.publish(task.id, EventType.GENERATION_STARTED, model_type=self.gen.model,
                            params=event_params(task), estimated_duration=None, worker=worker)
            stage = task.stage
            if outcome == "cancelled":
                data = {"stage": stage, "current_step": task.current_step}
                self._track(task, EventType.GENERATION_CANCELLED, data, None)
                bus.publish(task.id, EventType.GENERATION_STAGE, stage=Stage.CANCELLED.value, stage_progress=0.0,
                            stage_message=f"Cancelled during {stage}")
                bus.publish(task.id, EventType.GENERATION_CANCELLED, **data)
            else:
                data = {"stage": stage, "error_type": error_type, "error": error,
                        **({"worker": worker} if worker else {})}
                self._track(task, EventType.GENERATION_FAILED, data, None)
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
        if task._retries_left > 0 and not self._closed and not task.cancel_requested:
            retry = self.gen.submit(task.prompt, parent_id=task.parent_id, retries=task._retries_left - 1,
                                    **generation_kwargs(task.params))
            task.retry = retry
            extra["retry_task_id"] = retry.id
            message += f"; re-running it as task {retry.id}"
        self._end_here(task, "failed", info or None, error_type=WORKER_LOST, error=message, **extra)
