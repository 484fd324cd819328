"""The local engine's work queue (reorderable, pausable) and its copy on disk.

:class:`WorkQueue` holds what the worker thread (``wan_nb.core.local_engine``) will take next: tasks,
and functions queued by ``run_on_worker``. Tasks can be moved and removed while they wait; while the queue is paused
the worker takes no task (a function at the head of the queue still runs).

:class:`QueueFile` keeps ``<runs_dir>/queue.json``: the submit arguments of every task that
has not finished, so ``Generator.resume_queue()`` in a new process can start them again after
a crash. Several processes may share one runs dir: each entry names its owner process, the
file is rewritten atomically under an advisory lock, and only entries of dead owners are
taken over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

from wan_nb.protocol.processes import pid_alive, process_start_time
from wan_nb.runs.atomic import replace_text
from wan_nb.runs.layout import IMAGE_NAME, QUEUE_FILE_NAME
from wan_nb.core.params import GENERATION_ARGS, public_params

log = logging.getLogger(__name__)


class WorkerCall:
    """A function queued for the worker thread by ``Generator.run_on_worker``."""

    def __init__(self, fn: Callable[[Any], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self, pipeline: Any) -> None:
        try:
            self.result = self.fn(pipeline)
        except BaseException as exc:  # handed to the caller, never kills the worker
            self.error = exc
        finally:
            self.done.set()

    def fail(self, error: BaseException) -> None:
        """End the call without running it (the pipeline it needed could not be loaded)."""
        self.error = error
        self.done.set()

    def outcome(self, timeout: float | None) -> Any:
        """Wait for the call; its result, or raise its exception."""
        if not self.done.wait(timeout):
            raise TimeoutError(f"run_on_worker: still waiting after {timeout} s (tasks ahead of it)")
        if self.error is not None:
            raise self.error
        return self.result


class WorkQueue:
    """Items in run order; :meth:`get` blocks until one may run (None once closed and empty)."""

    def __init__(self) -> None:
        self._items: list[Any] = []
        self._cond = threading.Condition()
        self._paused = False
        self._closed = False

    def put(self, item: Any) -> None:
        with self._cond:
            self._items.append(item)
            self._cond.notify_all()

    def get(self) -> Any:
        with self._cond:
            while True:
                if self._items and (not self._paused or isinstance(self._items[0], WorkerCall)):
                    return self._items.pop(0)
                if self._closed and not self._items:
                    return None
                self._cond.wait()

    def remove(self, item: Any) -> bool:
        """Take ``item`` out if it is still waiting; False if the worker already has it."""
        with self._cond:
            try:
                self._items.remove(item)
            except ValueError:
                return False
            return True

    def move(self, item: Any, index: int) -> bool:
        """Put a waiting task at ``index`` among the waiting tasks (negative counts from the end)."""
        with self._cond:
            if item not in self._items:
                return False
            tasks = [i for i in self._items if not isinstance(i, WorkerCall)]
            tasks.remove(item)
            position = index if index >= 0 else len(tasks) + 1 + index
            tasks.insert(min(max(position, 0), len(tasks)), item)
            # Functions keep their place; the tasks around them are re-laid in the new order.
            order = iter(tasks)
            self._items = [i if isinstance(i, WorkerCall) else next(order) for i in self._items]
            self._cond.notify_all()
            return True

    def tasks(self) -> list[Any]:
        with self._cond:
            return [i for i in self._items if not isinstance(i, WorkerCall)]

    def __contains__(self, item: Any) -> bool:
        with self._cond:
            return item in self._items

    @property
    def paused(self) -> bool:
        return self._paused

    def pause(self) -> None:
        with self._cond:
            self._paused = True

    def resume(self) -> None:
        with self._cond:
            self._paused = False
            self._cond.notify_all()

    def close(self) -> None:
        """Let the worker finish what is queued, then stop (a paused queue resumes to drain)."""
        with self._cond:
            self._closed = True
            self._paused = False
            self._cond.notify_all()


# -- on disk --------------------------------------------------------------------------------
def _owner_alive(owner: Any) -> bool:
    """Whether the process that queued an entry still runs (then the entry is its, not an orphan).
    Entries written before the start time was recorded as ``create_time`` are judged by pid."""
    owner = owner if isinstance(owner, dict) else {}
    create_time = owner.get("create_time")
    return pid_alive(owner.get("pid"), create_time if isinstance(create_time, (int, float)) else None)


class QueueFile:
    """``<runs_dir>/queue.json``: ``{"tasks": {task_id: entry}}`` for every unfinished task."""

    def __init__(self, runs_dir: Path) -> None:
        self.path = Path(runs_dir) / QUEUE_FILE_NAME
        self.owner = {"pid": os.getpid(), "create_time": process_start_time(os.getpid())}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, Any]]:
        """The file's contents, locked against other processes; written back on exit."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(QUEUE_FILE_NAME + ".lock"), "a+") as lock:
            try:
                import fcntl

                fcntl.flock(lock, fcntl.LOCK_EX)
            except ImportError:  # no advisory locks on this system: last writer wins
                pass
            state = self._read()
            before = json.dumps(state, sort_keys=True)
            yield state
            if json.dumps(state, sort_keys=True) != before:
                self._write(state)

    def _read(self) -> dict[str, Any]:
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"tasks": {}}
        except (OSError, ValueError) as exc:
            log.warning("wan_nb: ignoring unreadable %s (%s)", self.path, exc)
            return {"tasks": {}}
        if not isinstance(state, dict) or not isinstance(state.get("tasks"), dict):
            return {"tasks": {}}
        return state

    def _write(self, state: dict[str, Any]) -> None:
        if not state["tasks"]:
            self.path.unlink(missing_ok=True)
            return
        replace_text(self.path, json.dumps(state, indent=1), durable=True)

    def add(self, task_id: str, entry: dict[str, Any]) -> None:
        try:
            with self._locked() as state:
                state["tasks"][task_id] = {**entry, "owner": self.owner}
        except OSError as exc:  # the queue still runs; only a crash recovery is lost
            log.warning("wan_nb: cannot record task %s in %s: %s", task_id, self.path, exc)

    def remove(self, task_id: str) -> None:
        try:
            with self._locked() as state:
                state["tasks"].pop(task_id, None)
        except OSError as exc:
            log.warning("wan_nb: cannot update %s: %s", self.path, exc)

    def take_orphans(self, accept: Callable[[dict[str, Any]], bool]) -> list[tuple[str, dict[str, Any]]]:
        """Remove and return, oldest first, the entries of dead processes that ``accept`` wants."""
        taken = []
        with self._locked() as state:
            for task_id, entry in sorted(state["tasks"].items(), key=lambda kv: kv[1].get("order", 0)):
                if not _owner_alive(entry.get("owner")) and accept(entry):
                    taken.append((task_id, state["tasks"].pop(task_id)))
        return taken

    def reorder(self, task_ids: list[str]) -> None:
        """Record a new run order of these (waiting) tasks."""
        try:
            with self._locked() as state:
                entries = [state["tasks"][i] for i in task_ids if i in state["tasks"]]
                for entry, order in zip(entries, sorted(e.get("order", 0) for e in entries)):
                    entry["order"] = order
        except OSError as exc:
            log.warning("wan_nb: cannot update %s: %s", self.path, exc)

    def put_back(self, task_id: str, entry: dict[str, Any]) -> None:
        """Return an entry taken by :meth:`take_orphans` that could not be submitted."""
        with self._locked() as state:
            state["tasks"].setdefault(task_id, entry)


def queue_entry(model: str, task: Any, given_image: Any) -> dict[str, Any]:
    """What ``resume_queue`` needs to submit ``task`` (of ``model``) again in another process."""
    from wan_nb.models.user_inputs import resume_kwargs

    kwargs = {k: v for k, v in public_params(task.params).items() if k in GENERATION_ARGS}
    kwargs.update(resume_kwargs(task.run_dir, getattr(task, "inputs", {})))  # the kept copies, not names
    if given_image is not None:
        if isinstance(given_image, (str, os.PathLike)):
            kwargs["image"] = str(Path(given_image).resolve())
        else:  # an in-memory picture: keep the prepared first frame beside the run
            path = task.run_dir / IMAGE_NAME
            task.params["image"].save(path)
            kwargs["image"] = str(path)
    return {"model": model, "prompt": task.prompt, "kwargs": kwargs, "parent_id": task.parent_id,
            "order": time.time()}


def resubmit(queue_file: QueueFile, model: str, submit: Callable[..., Any]) -> list[Any]:
    """``Generator.resume_queue``: ``submit(prompt, **kwargs)`` the orphaned entries of ``model``, in run order."""
    taken = queue_file.take_orphans(lambda e: e.get("model") == model)
    tasks = []
    for old_id, entry in taken:
        if entry.get("parent_id"):
            continue  # a storyboard scene: Storyboard.resume() makes what its folder lacks
        kwargs = {k: v for k, v in (entry.get("kwargs") or {}).items() if k in GENERATION_ARGS}
        try:
            tasks.append(submit(entry["prompt"], **kwargs))
        except Exception as exc:  # e.g. a LoRA not loaded in this process: keep it for a retry
            queue_file.put_back(old_id, entry)
            warnings.warn(f"wan_nb: could not resume task {old_id} ({type(exc).__name__}: {exc}); it stays "
                          f"in {queue_file.path} for a later resume_queue()", stacklevel=3)
    return tasks
