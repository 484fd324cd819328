"""The engine that runs a generator's tasks here: one worker thread, one pipeline, one queue.

:class:`LocalEngine` implements :class:`wan_nb.core.engine.Engine`. Its thread (started on demand)
takes the :class:`~wan_nb.core.queue.WorkQueue`'s items in order: tasks, run by
:class:`wan_nb.core.run.TaskRun`, and ``run_on_worker`` functions, which get the loaded pipeline (a
function queued before any run first loads it, as a task of its own: see :meth:`_load_for_call`).

Queue positions are published: ``generation_queued`` at submit, and again for every waiting
task whose place (``queue_position``, ``ahead``) a move, a removal, a start or an end changed.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from wan_nb.core.queue import WorkerCall, WorkQueue
from wan_nb.core.run import LOAD_PARAMS, RunContext, TaskRun, cancel_before_start, load_as_task
from wan_nb.core.engine import Engine, queue_fields
from wan_nb.protocol.errors import TaskNotQueued
from wan_nb.protocol.events import EventType
from wan_nb.core.task import EventHost, Task, new_task_id

__all__ = ["LocalEngine"]

log = logging.getLogger(__name__)


class LocalEngine(Engine):
    """Runs tasks on one thread of this process (see the module docstring).

    ``host``: what this engine's own tasks (a load for ``run_on_worker``) publish through;
    ``on_reorder(task_ids)``: told the new run order after a move; ``announce``: False on a Ray
    worker, whose driver announces its tasks and keeps their queue.
    """

    task_class = Task
    count = 1

    def __init__(self, ctx: RunContext, host: EventHost, *, name: str = "wan_nb-generator",
                 on_reorder: Callable[[list[str]], None] | None = None, announce: bool = True) -> None:
        self.ctx = ctx
        self.host = host
        self.name = name
        self.queue = WorkQueue()
        self.current: Task | None = None  # the task being run
        self._on_reorder = on_reorder
        self._announce = announce
        self._positions: dict[str, dict[str, int]] = {}  # waiting task -> its last generation_queued data
        self._positions_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._thread_lock = threading.Lock()

    # -- Engine ----------------------------------------------------------------------------------
    def submit(self, task: Task, *, retries: int = 0, started: dict[str, Any] | None = None) -> Task:
        if started is not None:
            self.ctx.sink.publish(task.id, EventType.GENERATION_STARTED, **started)
        self._start_thread()
        with self._positions_lock:
            # Announced before the worker can see it, so its first stage never comes before its place.
            if self._announce:
                fields = queue_fields(len(self.queue.tasks()), len(self.running))
                self.ctx.sink.publish(task.id, EventType.GENERATION_QUEUED, **fields)
                self._positions[task.id] = fields
            self.queue.put(task)
        return task

    def cancel(self, task: Task) -> None:
        """A task still waiting ends now, without the worker; a running one stops at its next step."""
        if self.queue.remove(task):
            cancel_before_start(self.ctx, task)
            self._announce_positions()

    def steer(self, task: Task, action: str, **kw: Any) -> bool:
        if action == "pause":
            return task.pause(**kw)
        if action == "resume":
            return task.resume()
        return False

    def move(self, task: Task, index: int) -> None:
        if isinstance(index, bool) or not isinstance(index, int):
            raise TypeError(f"move(index={index!r}): give an int (0 runs next, -1 runs last)")
        if not self.queue.move(task, index):
            raise TaskNotQueued(task.id, task.status)
        if self._on_reorder is not None:
            self._on_reorder([t.id for t in self.queue.tasks()])
        self._announce_positions()

    @property
    def queued(self) -> list[Task]:
        return self.queue.tasks()

    @property
    def running(self) -> list[Task]:
        current = self.current
        return [current] if current is not None else []

    def pause(self) -> None:
        self.queue.pause()

    def resume(self) -> None:
        self.queue.resume()

    @property
    def paused(self) -> bool:
        return self.queue.paused

    def run_on_worker(self, fn: Callable[[Any], Any], timeout: float | None = None) -> Any:
        call = WorkerCall(fn)
        self._start_thread()
        self.queue.put(call)
        return call.outcome(timeout)

    def close(self, timeout: float = 60.0) -> None:
        """Let the worker finish what is queued, then stop."""
        self.queue.close()
        if self._thread is not None:
            self._thread.join(timeout=timeout)

    # -- the worker thread ---------------------------------------------------------------------
    def _start_thread(self) -> None:
        with self._thread_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()

    def _work(self) -> None:
        holder = self.ctx.holder
        while True:
            item = self.queue.get()
            if item is None:
                return
            if isinstance(item, WorkerCall):
                with holder.lock:
                    if not holder.loaded and not self._load_for_call(item):
                        continue
                    item.run(holder.pipe)
                    holder.forget_device()  # the call may have moved or rebuilt the pipeline
                continue
            self.current = item
            self._announce_positions()  # everyone behind it moved up
            try:
                TaskRun(self.ctx, item).run()
            except BaseException:  # a run reports its own failures; this is a last resort
                log.exception("wan_nb worker crashed on task %s", item.id)
            finally:
                self.current = None
                if self.queue.paused:  # nothing starts next: who waits has one fewer ahead
                    self._announce_positions()

    def _load_for_call(self, call: WorkerCall) -> bool:
        """``run_on_worker`` before any run: load the pipeline first, as a task of its own.

        Its events (``generation_started`` with ``purpose: "load"``, the loading stages and
        ``model_loading_progress``, then ``generation_completed`` with an empty ``output_path``)
        go out under a fresh task id, so every client sees the download and load. False (and the
        call fails with the loader's error) if the model cannot be loaded.
        """
        task = Task(self.host, new_task_id(), dict(LOAD_PARAMS), None, engine=self)
        try:
            load_as_task(self.ctx, task)
        except BaseException as exc:
            call.fail(exc)
            return False
        return True

    def _announce_positions(self) -> None:
        """A ``generation_queued`` for every waiting task whose place changed."""
        if not self._announce:
            return
        with self._positions_lock:
            running = len(self.running)
            now = {}
            for position, task in enumerate(self.queue.tasks()):
                fields = now[task.id] = queue_fields(position, running)
                if self._positions.get(task.id) != fields:
                    self.ctx.sink.publish(task.id, EventType.GENERATION_QUEUED, **fields)
            self._positions = now
