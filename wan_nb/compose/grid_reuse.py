"""Finding a run with the same full recipe as a grid cell, so the cell reuses its video.

Two runs match when their ``wan_nb.recipe.recipe_key`` does: the generation arguments (the seed
included), the model and dtype, the LoRA files' hashes and weights (a weight of 0 counts as no
LoRA), the input image's pixels. Two places are searched: this generator's own tasks (queued,
running or done — a grid widened while the first one still runs shares those tasks; their keys
are the ones recorded in their ``task.json`` when they were queued), then the finished runs of
its runs dir through the history index (``wan_nb.history.find_by_key``), so runs of earlier
processes count too.

A task that ended without its video does not stand in for a cell: a failed, cancelled or lost
one is redone. A *stopped* or *interrupted* one (``stop_after``, ``cancel(keep=True)``, a killed
process: :data:`wan_nb.protocol.statuses.RESUMABLE`) kept a checkpoint and only a preview, so it
is not reused as done either: a cell that asks for the whole run continues it from its checkpoint
(``gen.submit_resume``: the same video an uninterrupted run makes, for the steps left), and a cell
that itself stops early (``stop_after``) or a ``refresh=True`` grid renders anew.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

from wan_nb.protocol.errors import ResumeError
from wan_nb.runs.recipe import RecipeError
from wan_nb.protocol.statuses import FINISHED, RESUMABLE
from wan_nb.runs.layout import TASK_FILE

__all__ = ["finder", "Finder", "ReusedTask"]


class ReusedTask:
    """A finished run standing in for a grid cell's task: done, completed, with its Result."""

    status = "completed"
    stage = "completed"
    progress = 100.0
    reused = True

    def __init__(self, result: Any, created_at: float | None = None) -> None:
        self._result = result
        self.id = self.task_id = result.task_id
        self.params = dict(result.params)
        self.seed = result.seed
        self.prompt = self.params.get("prompt", "")
        self.run_dir = result.run_dir
        self.current_step = int(self.params.get("steps") or 0)
        self.created_at = created_at if created_at is not None else time.time()
        self.events: list[Any] = []

    def result(self, timeout: float | None = None) -> Any:
        return self._result

    def wait(self, timeout: float | None = None) -> bool:
        return True

    def done(self) -> bool:
        return True

    def cancel(self) -> bool:
        return False

    def subscribe(self, callback: Callable[[Any], Any], replay: bool = True) -> Callable[[], None]:
        return lambda: None  # nothing more will happen to a finished run

    def __repr__(self) -> str:
        return f"ReusedTask(id={self.id!r}, video_path='{self._result.video_path}')"


def _recorded_key(run_dir: Path) -> str | None:
    """The recipe key written into a run's task.json when it was queued."""
    try:
        info = json.loads((Path(run_dir) / TASK_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    key = info.get("recipe_key") if isinstance(info, dict) else None
    return key if isinstance(key, str) else None


def _result_of(run: Any) -> Any:
    from wan_nb.core.task import Result

    return Result(task_id=run.task_id, video_path=run.video_path, params=dict(run.params),
                  seed=int(run.seed if run.seed is not None else run.params.get("seed", 0)),
                  model=run.model or "", duration_s=float(run.duration_s or 0.0),
                  run_dir=run.run_dir or run.video_path.parent)


class Finder:
    """``find(params) -> (key, task or None)`` for cells of a generator, and :meth:`submit` for the
    cells nothing finished stands in for (made by :func:`finder`)."""

    def __init__(self, generator: Any) -> None:
        self.generator = generator
        self.live: dict[str, Any] = {}        # key -> a queued, running, paused or completed task
        self.stopped: dict[str, Any] = {}     # key -> a task that ended early with a checkpoint
        for task in generator.tasks:          # oldest first: the newest of a key wins
            key = _recorded_key(task.run_dir)
            if key is None:
                continue
            if task.status in RESUMABLE:
                self.stopped[key] = task
            elif task.status not in FINISHED or task.status == "completed":
                self.live[key] = task

    def __call__(self, params: dict[str, Any]) -> tuple[str | None, Any]:
        from wan_nb.runs import history
        from wan_nb.core import recipes as recipe
        from wan_nb.models.specs import prepare_image

        params = dict(params)
        for name in ("image", "last_image"):   # the picture the run would see, as submit prepares it
            if params.get(name) is not None:
                params[name] = prepare_image(params[name], params["height"], params["width"])
        key = recipe.recipe_key(recipe.build(self.generator, params))
        if key in self.live:
            return key, self.live[key]
        run = history.find_by_key(self.generator.runs_dir, key)
        return key, (ReusedTask(_result_of(run)) if run is not None else None)

    def submit(self, prompt: str, kwargs: dict[str, Any], key: str | None) -> Any:
        """The task for a cell with no finished run: the continuation of a stopped task of the same
        recipe ``key`` when the cell asks for the whole run, else a new one (``key=None``: always new)."""
        stopped = self.stopped.pop(key, None) if key is not None else None
        if stopped is not None and kwargs.get("stop_after") is None:
            try:
                return self.generator.submit_resume(stopped)
            except (ResumeError, RecipeError):
                pass   # its checkpoint, model or a LoRA file changed since: render the cell anew
        return self.generator.submit(prompt, **kwargs)


def finder(generator: Any) -> Finder:
    """The :class:`Finder` for cells of ``generator`` (params: ``generator.check``'s)."""
    return Finder(generator)
