"""The driver's pool of pipeline workers: which actor takes the next task, and replacing dead ones.

Ray places the actors (one GPU each, or one CPU on a cluster without GPUs) and runs them; the
pool only remembers what each one holds, so a task goes to a free worker that already has the
model loaded and the task's LoRAs attached, and a worker that died is replaced by a new actor.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from .worker import PipelineWorker

__all__ = ["WorkerPool", "Slot"]

_pool_ids = itertools.count(1)


@dataclass
class Slot:
    """One place in the pool and the actor that fills it now."""

    index: int
    actor: Any
    generation: int = 1                     # how many actors this slot has had
    busy: bool = False
    loaded: bool = False                    # the actor has run a task, so its pipeline is loaded
    loras: tuple = ()                       # the LoRA set attached on the actor
    info: dict[str, Any] | None = None      # {"id", "host", "pid", "device"} once known
    describe_ref: Any = field(default=None, repr=False)

    @property
    def worker_id(self) -> str:
        return f"w{self.index}" + (f".{self.generation}" if self.generation > 1 else "")


class WorkerPool:
    """``count`` actors built by ``make(worker_id)``; :meth:`acquire` / :meth:`release` them."""

    def __init__(self, ray: Any, count: int, make: Callable[[str], Any]) -> None:
        self._ray = ray
        self._make = make
        self._cond = threading.Condition()
        self._closed = False
        self.id = next(_pool_ids)
        self.replaced = 0
        self.slots = [self._fill(Slot(index=i + 1, actor=None)) for i in range(count)]

    def _fill(self, slot: Slot) -> Slot:
        slot.actor = self._make(slot.worker_id)
        slot.loaded, slot.loras, slot.info = False, (), None
        slot.describe_ref = control(slot.actor.describe).remote()
        return slot

    def acquire(self, loras: tuple, cancelled: Callable[[], bool]) -> Slot | None:
        """The best free worker for a task needing ``loras``; waits for one. None if cancelled/closed."""
        with self._cond:
            while True:
                if self._closed or cancelled():
                    return None
                idle = [s for s in self.slots if not s.busy]
                # Only actors that have started: one Ray cannot place (more workers than GPUs) stays
                # pending and must not hold a task.
                free = [s for s in idle if self._started(s)]
                if free:
                    # Warm first (model in memory), then the same LoRAs attached, then the lowest index.
                    slot = min(free, key=lambda s: (not s.loaded, s.loras != loras, s.index))
                    slot.busy = True
                    return slot
                self._cond.wait(0.05 if idle else 0.5)

    def release(self, slot: Slot, *, loaded: bool, loras: tuple) -> None:
        with self._cond:
            slot.busy = False
            slot.loaded = slot.loaded or loaded
            slot.loras = loras if loaded else slot.loras
            self._cond.notify_all()

    def replace(self, slot: Slot) -> None:
        """The slot's actor died (or hangs): end it for good and put a new actor in its place."""
        try:
            self._ray.kill(slot.actor, no_restart=True)
        except Exception:
            pass  # already gone
        with self._cond:
            slot.generation += 1
            self.replaced += 1
            if not self._closed:
                self._fill(slot)
            slot.busy = False
            self._cond.notify_all()

    def _started(self, slot: Slot) -> bool:
        """The actor answered ``describe`` (or died trying: its task then reports the loss)."""
        if slot.info is not None or slot.describe_ref is None:
            return True
        ready, _ = self._ray.wait([slot.describe_ref], timeout=0)
        if ready:
            self.info(slot)
        return bool(ready)

    def info(self, slot: Slot, timeout: float = 0.0) -> dict[str, Any] | None:
        """What the slot's actor said about itself (host, pid, device), if it has answered yet."""
        if slot.info is None and slot.describe_ref is not None:
            try:
                ready, _ = self._ray.wait([slot.describe_ref], timeout=timeout)
                if ready:
                    described = self._ray.get(slot.describe_ref)
                    slot.info = {k: described[k] for k in ("id", "host", "pid", "device")}
            except Exception:
                pass  # the actor died before answering: the caller says so
        return slot.info

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def close(self) -> None:
        """Stop every actor now (a running task dies with it; the backend has cancelled them)."""
        with self._cond:
            self._closed = True
            actors = [s.actor for s in self.slots]
            self._cond.notify_all()
        for actor in actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:
                pass


def actor_class(ray: Any) -> Any:
    """The Ray actor class: ``run`` one task at a time; ``control`` calls (steer, describe) beside it."""
    return ray.remote(concurrency_groups={"control": 2})(PipelineWorker)


def control(method: Any) -> Any:
    """``method`` called in the control group, so it never waits behind a running task."""
    return method.options(concurrency_group="control")
