"""The scenes of one storyboard rendering: each scene's state, and rendering them as generator tasks.

:class:`SceneRenders` owns everything a storyboard knows about its scenes while they render (their
status, progress, task ids, the videos made so far, the tasks still running) and the lock that
guards it. The storyboard run (:mod:`wan_nb.storyboard.run`) drives the steps and publishes the
events; it hands this object a way to publish (``emit``) and its cancel flag.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

from wan_nb.core.params import GENERATION_ARGS
from wan_nb.core.task import Result
from wan_nb.protocol.errors import GenerationCancelled, StoryboardError
from wan_nb.protocol.events import Event, EventType
from wan_nb.runs import checkpoint_file

from . import folder as layout

__all__ = ["SceneRenders", "StopAtScene", "SceneFailure", "VIDEOS_START", "VIDEOS_END"]

# Overall progress (0-100) at the edges of the videos step. The scene videos get most of the bar
# because they take most of the time; inside it each scene's share is proportional to its
# frames x steps, and moves with each of its denoising steps.
VIDEOS_START, VIDEOS_END = 20.0, 90.0


class StopAtScene(Exception):
    """The storyboard was cancelled (during ``scene``, or between scenes when None);
    ``kept_step``: the scene's checkpoint was kept at that step (``cancel(keep=True)``)."""

    def __init__(self, scene: int | None, kept_step: int | None = None) -> None:
        super().__init__(scene)
        self.scene = scene
        self.kept_step = kept_step


class SceneFailure(Exception):
    """A scene failed; ``error`` is the StoryboardError the run ends with."""

    def __init__(self, error: StoryboardError, error_type: str, detail: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.error_type = error_type
        self.detail = detail


class SceneRenders:
    """The scenes of one rendering and the generator tasks that make them."""

    def __init__(self, board: Any, generator: Any, run_id: str, emit: Callable[..., Any],
                 cancel: threading.Event) -> None:
        self.board = board
        self.generator = generator
        self.run_id = run_id
        self.emit = emit          # the run's publisher: emit(step, status, progress, message, **data)
        self.cancel_flag = cancel
        self.keep_checkpoints = False   # cancel(keep=True): a scene stopped mid-way keeps its checkpoint
        self.resume_checkpoints = False  # resume(): a scene stopped mid-way continues from its checkpoint
        n = len(board.scenes)
        self.status = ["pending"] * n
        self.progress = [0.0] * n
        self.task_ids: list[str | None] = [None] * n
        self.videos: list[Path] = []
        self.lock = threading.RLock()
        self.running: dict[int, Any] = {}     # scene index (1-based) -> its task, while it renders
        self.made: dict[int, Path] = {}       # scenes made (or reused) so far
        self.last_step_event = float("-inf")
        work = [p["num_frames"] * p["steps"] for p in board.scene_params]
        total = float(sum(work)) or 1.0
        span = VIDEOS_END - VIDEOS_START
        self.widths = [span * w / total for w in work]  # each scene's share of the videos step

    def running_tasks(self) -> list[Any]:
        return list(self.running.values())

    def check_cancel(self, scene: int | None = None) -> None:
        if self.cancel_flag.is_set():
            raise StopAtScene(scene)

    def overall(self) -> float:
        """Overall progress from every scene's share and its own progress: scenes rendering side by
        side (on a cluster) all move the bar; one after another, it is the running scene's place."""
        return VIDEOS_START + sum(w * p / 100.0 for w, p in zip(self.widths, self.progress))

    def on_progress(self, index: int, event: Event) -> None:
        """Re-publish a scene's denoising progress as overall storyboard progress (coalesced)."""
        if event.type != EventType.DETAILED_GENERATION_PROGRESS:
            return
        with self.lock:
            if index not in self.running:  # a late event of a scene already reported
                return
            scene_progress = float(event.data.get("progress", 0.0))
            self.progress[index - 1] = max(self.progress[index - 1], scene_progress)
            now = time.monotonic()
            if now - self.last_step_event < self.board.progress_interval:
                return
            self.last_step_event = now
            n = len(self.board.scenes)
            step, total = event.data.get("current_step", 0), event.data.get("total_steps", 0)
            self.emit("videos", "in_progress", self.overall(),
                      f"Scene {index}/{n}: {event.data.get('message') or event.data.get('stage')}",
                      scene_index=index, scene_task_id=event.task_id, scene_progress=round(scene_progress, 2),
                      current_step=step, total_steps=total)

    # -- one scene ---------------------------------------------------------------------------
    def kwargs_for(self, index: int) -> dict[str, Any]:
        board = self.board
        params = dict(board.scene_params[index - 1])
        kwargs = {k: params[k] for k in GENERATION_ARGS if k in params}
        if board.continuity in ("last_frame", "flf2v") and index > 1 and board.scenes[index - 1].image is None:
            from wan_nb.models.video_io import read_frames

            kwargs["image"] = read_frames(self.videos[index - 2])[-1]
        return kwargs

    def render(self, index: int) -> Result:
        return self.wait_for(index, *self.submit(index))

    def submit(self, index: int) -> tuple[Any, Callable[[], None]]:
        n = len(self.board.scenes)
        scene = self.board.scenes[index - 1]
        with self.lock:
            self.status[index - 1] = "running"
        point = None
        try:
            kwargs = self.kwargs_for(index)
            point = self.checkpoint_for(index, scene.prompt, kwargs) if self.resume_checkpoints else None
            task = self._submit(scene.prompt, kwargs, point)
        except Exception as exc:
            self.fail(index, None, exc)
        layout.note_scene_task(self.board, index, task.id)   # before its first step: resume() finds it
        self.task_ids[index - 1] = task.id
        with self.lock:
            self.running[index] = task
        off = self.generator.subscribe(lambda event: self.on_progress(index, event), task_id=task.id,
                                       types=[EventType.DETAILED_GENERATION_PROGRESS])
        how = f"resuming from step {point.step}/{point.total_steps}" if point is not None else "starting"
        link = {"resumed_from": point.task_id, "resume_step": point.step} if point is not None else {}
        self.emit("videos", "in_progress", self.overall(), f"Scene {index}/{n}: {how}",
                  scene_index=index, scene_task_id=task.id, scene_prompt=scene.prompt, **link)
        if self.cancel_flag.is_set():  # cancel() ran between submit and the task being in `running`
            task.cancel(keep=self.keep_checkpoints)
        return task, off

    def checkpoint_for(self, index: int, prompt: str, kwargs: dict[str, Any]) -> Any:
        """Where an earlier render of scene ``index``, stopped or interrupted mid-way, left off with
        exactly these arguments (the same recipe): a checked ResumePoint, or None to start over."""
        folders = layout.scene_checkpoints(self.board, index)
        if not folders:
            return None
        from wan_nb.compose.resume import recipe_for, resume_point
        from wan_nb.core.recipes import recipe_key

        key = recipe_key(recipe_for(self.generator, prompt, kwargs))
        for folder in folders:
            if (checkpoint_file.read_summary(folder) or {}).get("recipe_key") != key:
                continue  # the scene changed since (or the summary is torn): not this one
            try:
                return resume_point(self.generator, folder)
            except (ValueError, OSError, KeyError):  # damaged, another wan_nb's, still running elsewhere
                continue
        return None

    def _submit(self, prompt: str, kwargs: dict[str, Any], point: Any) -> Any:
        if point is not None:
            from wan_nb.compose.resume import submit_point

            try:
                return submit_point(self.generator, point, prompt, kwargs, parent_id=self.run_id)
            except ValueError:  # e.g. a Ray generator keeps no checkpoints: the scene starts over
                pass
        return self.generator.submit(prompt, parent_id=self.run_id, **kwargs)

    def wait_for(self, index: int, task: Any, off: Callable[[], None]) -> Result:
        try:
            result = task.result()
        except GenerationCancelled:
            kept = task.status == "stopped"   # cancel(keep=True): its checkpoint stays for resume()
            with self.lock:
                self.running.pop(index, None)
                self.status[index - 1] = "stopped" if kept else "cancelled"
            summary = checkpoint_file.read_summary(task.run_dir) if kept else None
            raise StopAtScene(index, summary.get("step") if summary else None)
        except Exception as exc:
            self.fail(index, task.id, exc)
        finally:
            off()
        self.done(index, result.video_path, result)
        return result

    def fail(self, index: int, task_id: str | None, exc: BaseException) -> None:
        n = len(self.board.scenes)
        with self.lock:
            self.running.pop(index, None)
            self.status[index - 1] = "failed"
        cause = exc.__cause__ if exc.__cause__ is not None and task_id else exc
        error_type = getattr(exc, "error_type", type(exc).__name__)
        detail = str(cause) or error_type
        error = StoryboardError(f"Scene {index} of {n} failed: {error_type}: {detail}", storyboard_id=self.run_id,
                                step="videos", failed_scene=index, scene_task_id=task_id)
        error.__cause__ = exc
        raise SceneFailure(error, error_type, detail)

    def done(self, index: int, source: Path, result: Result | None, reused: bool = False) -> None:
        board = self.board
        n = len(board.scenes)
        target = board.scene_path(index)
        if not reused:
            layout.keep_scene(board, index, source, result.task_id if result else None)
        with self.lock:
            self.running.pop(index, None)
            self.status[index - 1] = "reused" if reused else "completed"
            self.progress[index - 1] = 100.0
            self.made[index] = target
            # Scene n is item n - 1 of the videos (servers serve .../scenes/n from it): list the
            # made scenes up to the first one still missing (scenes finishing out of order wait).
            self.videos = []
            while len(self.videos) + 1 in self.made:
                self.videos.append(self.made[len(self.videos) + 1])
            self.emit("videos", "in_progress", self.overall(),
                      f"Scene {index}/{n} " + ("already on disk" if reused else "done"),
                      scene_index=index, scene_video=str(target), scene_url=layout.scene_url(self.run_id, index),
                      scene_task_id=result.task_id if result else None, scene_reused=reused)

    # -- many scenes at once -----------------------------------------------------------------
    def render_together(self, indexes: list[int]) -> dict[int, Result]:
        """Submit every scene, then take each as it finishes; one that fails or is cancelled ends the rest."""
        waiting: dict[int, tuple[Any, Callable[[], None]]] = {}
        finished_results: dict[int, Result] = {}
        try:
            for index in indexes:
                self.check_cancel(index)
                waiting[index] = self.submit(index)
            while waiting:
                finished = [i for i, (task, _) in waiting.items() if task.done()]
                if not finished:
                    next(iter(waiting.values()))[0].wait(0.05)
                    continue
                for index in finished:
                    finished_results[index] = self.wait_for(index, *waiting.pop(index))
            return finished_results
        finally:
            for task, off in waiting.values():
                task.cancel()
                off()
            with self.lock:
                for index in waiting:
                    self.running.pop(index, None)
