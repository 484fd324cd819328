"""Handles on work a Generator does: Task (one generation), Result, Sweep.

Every handle — a generation's :class:`Task`, a storyboard's run — answers the same questions the
same way (:class:`Handle`): ``id``, ``status``, ``cancel()``, ``done()``, ``wait()``,
``result()``, ``events``, ``subscribe()``. A handle reads its generator's public surface only.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol, runtime_checkable

from wan_nb.protocol import frontend
from wan_nb.protocol.errors import TaskNotQueued
from wan_nb.protocol.events import Event, Stage
from wan_nb.protocol.steering import STEER_ACTIONS
from wan_nb.runs import kept_inputs

if TYPE_CHECKING:
    from wan_nb.core.bus import EventBus

__all__ = ["Handle", "Task", "Result", "Sweep", "EventHost", "TaskEngine", "new_task_id", "steer",
           "STEER_ACTIONS"]


@runtime_checkable
class EventHost(Protocol):
    """What a handle reads its events from (a Generator; on a Ray worker, its host)."""

    @property
    def bus(self) -> "EventBus": ...

    def subscribe(self, callback: Callable[[Event], Any], *, task_id: str | None = None,
                  types: Iterable[str] | None = None, replay: bool = False) -> Callable[[], None]: ...


class TaskEngine(Protocol):
    """What a task needs of the engine that holds it (``wan_nb.core.engine.Engine`` is one)."""

    def move(self, task: "Task", index: int) -> None: ...

    def cancel(self, task: "Task") -> None: ...


def new_task_id() -> str:
    """A fresh task id: sortable by creation time, unique across processes."""
    return time.strftime("%Y%m%d-%H%M%S-", time.gmtime()) + uuid.uuid4().hex[:8]


def steer(handle: "Handle | None", action: str, **kw: Any) -> bool:
    """``Generator.steer`` once the handle is found: False where the action does not apply."""
    if action not in STEER_ACTIONS:
        raise ValueError(f"steer: unknown action {action!r}; choose one of {', '.join(STEER_ACTIONS)}")
    if handle is None:
        return False
    try:
        if action == "move":
            handle.move(kw.get("index"))
            return True
        if action == "pause":
            return handle.pause(release_memory=bool(kw.get("release_memory", False)))
        return getattr(handle, action)()
    except (TaskNotQueued, TypeError):
        return False


class Handle:
    """What every unit of a generator's work shares: an id, a status and one ending.

    The thread that does the work sets the outcome (:meth:`set_outcome`), publishes the last
    event, then calls :meth:`mark_done` exactly once; everything else only reads. ``generator``
    is whatever publishes the handle's events (a Generator; on a Ray worker, its engine host).
    """

    def __init__(self, generator: "EventHost", task_id: str) -> None:
        self.id = task_id
        self.generator = generator
        self.status = "queued"
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None

    @property
    def task_id(self) -> str:
        return self.id

    def cancel(self) -> bool:
        """Ask it to stop (within one denoising step). False if it has already finished."""
        if self._done.is_set():
            return False
        self._cancel.set()
        self._cancelled()
        return True

    def _cancelled(self) -> None:
        """Called once a cancel was requested: wake or stop whatever runs."""

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def pause(self, release_memory: bool = False) -> bool:
        """Hold at the next denoising step; False where nothing can be held."""
        return False

    def resume(self) -> bool:
        return False

    def move(self, index: int) -> None:
        """Change its place in the queue (only a queued generation has one)."""
        raise TaskNotQueued(self.id, self.status)

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> Any:
        """Wait; return the result or raise why there is none."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"task {self.id} is still {self.status} after {timeout} s")
        self.generator.bus.drain(timeout=2.0)  # listeners have seen the end before we return
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    @property
    def events(self) -> list[Event]:
        """Its events so far, oldest first."""
        return self.generator.bus.history(self.id)

    def subscribe(self, callback: Callable[[Event], Any], replay: bool = True) -> Callable[[], None]:
        """``callback(event)`` for its events only; ``replay`` first delivers what already happened."""
        return self.generator.subscribe(callback, task_id=self.id, replay=replay)

    # -- for the thread that does the work ----------------------------------------------------
    def set_outcome(self, status: str, *, result: Any = None, error: BaseException | None = None) -> None:
        """Record how it ended (before its last event is published)."""
        self.status = status
        if result is not None:
            self._result = result
        if error is not None:
            self._error = error

    def mark_done(self) -> None:
        """After its last event: wake whoever waits on it."""
        self._done.set()


@dataclass(frozen=True)
class Result:
    """A finished generation: the MP4 and everything needed to make it again."""

    task_id: str
    video_path: Path
    params: dict[str, Any]
    seed: int
    model: str
    duration_s: float
    run_dir: Path
    stopped_at: int | None = None    # ``stop_after=k``: the video is the x0 preview at step k; resume_run finishes it

    @property
    def inputs(self) -> dict[str, list[Path]]:
        """Each input the run used (image, video, mask, ...) -> its files in ``<run>/inputs/``."""
        return kept_inputs.paths(self.run_dir)

    def _ipython_display_(self) -> None:
        frontend.show("result", self)

    def __repr__(self) -> str:
        return (f"Result(task_id={self.task_id!r}, video_path='{self.video_path}', seed={self.seed}, "
                f"duration_s={self.duration_s:.2f})")


class Task(Handle):
    """A queued or running generation. Returned by :meth:`Generator.submit`.

    >>> task = gen.submit("a fox", seed=1)
    >>> task.pause(); task.resume()     # hold between two denoising steps, then go on
    >>> task.move(0)                    # while queued: run it next
    >>> task.result()
    """

    def __init__(self, generator: "EventHost", task_id: str, params: dict[str, Any],
                 run_dir: Path, parent_id: str | None = None, *, engine: TaskEngine | None = None) -> None:
        super().__init__(generator, task_id)
        self.engine = engine  # where it runs (wan_nb.core.engine); None for a task no engine holds
        self.params = params
        self.seed: int = params["seed"]
        self.prompt: str = params["prompt"]
        self.run_dir = run_dir
        self.parent_id = parent_id
        self.stage: str = Stage.INITIALIZING.value
        self.progress = 0.0
        self.current_step = 0
        self.created_at = time.time()
        # Pausing: the worker waits on this condition at a step boundary while _hold is set.
        self._steer = threading.Condition()
        self._hold = False
        self.release_memory = False
        # Checkpoints (wan_nb.core.resume): where a resumed run starts, where stop_after ends it.
        self.resume_point: Any = None
        self.stop_after: int | None = None
        self.keep_checkpoint = False

    # -- steering ----------------------------------------------------------------------------
    def cancel(self, keep: bool = False) -> bool:
        """Ask it to stop within one denoising step. ``keep=True`` keeps a checkpoint of the last
        step done, so ``gen.resume_run(task)`` can finish it later. False if it has finished."""
        self.keep_checkpoint = bool(keep)
        return super().cancel()

    def pause(self, release_memory: bool = False) -> bool:
        """Hold at the next denoising step boundary (status ``"paused"`` once it holds).

        A checkpoint is written as it holds. ``release_memory=True`` also moves the pipeline off
        the accelerator while paused and back on :meth:`resume`. A paused task can still be cancelled. False if it has finished.
        """
        with self._steer:
            if self._done.is_set():
                return False
            self._hold = True
            self.release_memory = bool(release_memory)
        return True

    def resume(self) -> bool:
        """Go on after :meth:`pause`; False if it was not paused (or has finished)."""
        with self._steer:
            if not self._hold or self._done.is_set():
                return False
            self._hold = False
            self._steer.notify_all()
        return True

    @property
    def pause_requested(self) -> bool:
        return self._hold

    def wait_while_paused(self) -> None:
        """Block (the worker, at a step boundary) until resumed or cancelled."""
        with self._steer:
            while self._hold and not self.cancel_requested:
                self._steer.wait()

    def move(self, index: int) -> None:
        """Change where this queued task stands: 0 runs next, -1 runs last.

        Raises :class:`~wan_nb.protocol.errors.TaskNotQueued` once it has started or finished.
        """
        if self.engine is None:
            raise TaskNotQueued(self.id, self.status)
        self.engine.move(self, index)

    def _cancelled(self) -> None:
        with self._steer:
            self._steer.notify_all()  # a paused task wakes up to stop
        if self.engine is not None:
            self.engine.cancel(self)

    # -- display -----------------------------------------------------------------------------
    def _ipython_display_(self) -> None:
        frontend.show("task", self)

    def __repr__(self) -> str:
        return (f"Task(id={self.id!r}, status={self.status!r}, stage={self.stage!r}, "
                f"progress={self.progress:.0f}%)")


@dataclass
class Sweep:
    """Tasks of a parameter sweep, each labelled by the parameters that vary."""

    labels: list[dict[str, Any]]
    tasks: list[Task]
    _results: list[Result] | None = field(default=None, repr=False)

    def results(self, timeout: float | None = None) -> list[Result]:
        """Wait for every task; a failed one raises (its siblings' videos are kept on disk)."""
        if self._results is None:
            self._results = [task.result(timeout) for task in self.tasks]
        return self._results

    def forget_results(self) -> None:
        """After its tasks changed (a grid widened): the next :meth:`results` waits again."""
        self._results = None

    def __iter__(self):
        return iter(zip(self.labels, self.tasks))

    def __len__(self) -> int:
        return len(self.tasks)

    def _ipython_display_(self) -> None:
        frontend.show("sweep", self)
