"""Keeps every run folder's record: the recipe when a task is queued, the outcome when it ends.

A bus sink of the generator (``Recorder``). On ``generation_started`` it writes the recipe into
``task.json`` (and the input image beside it, as the run used it) and keeps it for the MP4
writer, which asks :meth:`Recorder.mp4_tags` as it encodes (a writer that did not is caught up
by a stream copy at the end). On the task's final event it writes the outcome into
``task.json`` and one line into the runs folder's history index. Failures here are logged, never raised: a run is not lost because its
record could not be written.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from wan_nb.runs import history
from wan_nb.runs import journal
from wan_nb.core import recipes
from wan_nb.runs.layout import TASK_FILE, VIDEO_NAME
from wan_nb.protocol.events import TERMINAL_STATUS, Event, EventType
from wan_nb.protocol.statuses import ENDING_STAGES
from wan_nb.models.user_inputs import attach_files

__all__ = ["Recorder", "attach"]

log = logging.getLogger(__name__)

_ENDS = TERMINAL_STATUS  # event type -> the status it leaves


class Recorder:
    """``generator.add_sink(Recorder(generator))`` (any ``wan_nb.core.surface.GeneratorSurface``)."""

    def __init__(self, generator: Any) -> None:
        self.generator = generator
        self._running: set[str] = set()  # tasks whose task.json already says "running"
        self._recipes: dict[str, dict[str, Any]] = {}  # queued or running task -> its recipe
        self._embedded: set[str] = set()  # tasks whose MP4 got the recipe as it was written
        self._lock = threading.Lock()

    def mp4_tags(self, task_id: str) -> dict[str, str]:
        """Container tags for the task's MP4 (its recipe), for the writer to add as it encodes:
        free, where writing them afterwards costs a stream copy."""
        with self._lock:
            made = self._recipes.get(task_id)
            if made is None:
                return {}
            self._embedded.add(task_id)
        return {recipes.METADATA_TAG: recipes.dumps(made)}

    def __call__(self, event: Event) -> None:
        if event.type == EventType.GENERATION_STAGE:
            # The first stage after "initializing" is where a queued task starts running.
            if event.task_id in self._running or event.data.get("stage") == "initializing":
                return
        elif event.type != EventType.GENERATION_STARTED and event.type not in _ENDS:
            return
        try:
            task = self.generator.task(event.task_id)
        except KeyError:  # a storyboard's own events: its scenes are recorded as tasks
            return
        try:
            if event.type == EventType.GENERATION_STARTED:
                self._queued(task)
            elif event.type == EventType.GENERATION_STAGE:
                self._running.add(task.id)
                if event.data.get("stage") not in ENDING_STAGES:
                    info = self._read(task)
                    info["status"] = "running"
                    journal.write_task_file(task.run_dir, info)
            else:
                self._running.discard(task.id)
                self._ended(task, event)
        except Exception as exc:
            log.warning("wan_nb: could not record run %s in %s: %s", task.id, task.run_dir, exc)

    def _read(self, task: Any) -> dict[str, Any]:
        try:
            info = json.loads((task.run_dir / TASK_FILE).read_text(encoding="utf-8"))
            if isinstance(info, dict):
                return info
        except (OSError, ValueError):
            pass
        return {"task_id": task.id, "model": self.generator.model, "prompt": task.prompt,
                "params": {k: v for k, v in task.params.items() if k != "image"}, "seed": task.seed,
                "created_at": recipes.created_at_iso(task.created_at)}

    def _queued(self, task: Any) -> None:
        info = self._read(task)
        image_path = task.run_dir / recipes.IMAGE_NAME if task.params.get("image") is not None else None
        made = recipes.build(self.generator, task.params, image_path=image_path, task_id=task.id,
                             created_at=info.get("created_at") or recipes.created_at_iso(task.created_at))
        attach_files(made, info.get("inputs"), task.run_dir)  # where the run keeps each input
        info.update(status="queued", created_ts=task.created_at, recipe=made, recipe_key=recipes.recipe_key(made))
        with self._lock:
            self._recipes[task.id] = made
        journal.write_task_file(task.run_dir, info)

    def _ended(self, task: Any, event: Event) -> None:
        info = self._read(task)
        status = _ENDS[event.type]
        made = info.get("recipe")
        with self._lock:
            self._recipes.pop(task.id, None)
            embedded = task.id in self._embedded
            self._embedded.discard(task.id)
        video = None
        if status == "completed":
            output = Path(event.data.get("output_path") or task.run_dir / VIDEO_NAME)
            video = output.name
            if isinstance(made, dict) and not embedded:  # a writer that did not ask mp4_tags
                try:
                    recipes.embed(output, made)
                except OSError as exc:  # the video and task.json still record the run
                    log.warning("wan_nb: could not write the recipe into %s: %s", output, exc)
        info.update(status=status, finished_at=event.timestamp, created_ts=task.created_at,
                    duration_s=event.data.get("duration_s"), video=video,
                    error=event.data.get("error") if status == "failed" else None)
        journal.write_task_file(task.run_dir, info)
        entry = history.entry_from_task(info, task.run_dir.name, status=status, video=video,
                                        duration_s=info["duration_s"], finished_at=event.timestamp,
                                        error=info["error"], key=info.get("recipe_key"))
        history.record(task.run_dir.parent, entry)


def attach(generator: Any) -> Recorder:
    """A Recorder for ``generator``, added to its bus as a sink."""
    recorder = Recorder(generator)
    generator.add_sink(recorder)
    return recorder
