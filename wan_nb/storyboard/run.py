"""Rendering a storyboard: scene after scene on the generator (side by side on a cluster), then the stitch.

A run is a task of its own (:meth:`Generator.open_task`): it has an id, publishes
``storyboard_progress`` events on the generator's bus (so ``gen.subscribe``, the run journal and
every Jupyter server see them) and is steered like a generation. Its steps are
``init -> story -> scenes -> video_params -> videos -> stitch -> complete``. While the scene
videos render, the overall progress moves with every scene *and* every denoising step. Each
scene is an ordinary generator task whose ``parent_id`` is the storyboard's id, so its own
detailed events are there too.

A failed scene ends the storyboard with ``status: "failed"`` naming the scene; the scenes
already made stay on disk and ``Storyboard.resume`` makes only what is missing.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from wan_nb.protocol import frontend
from wan_nb.protocol.errors import GenerationCancelled, StoryboardCancelled, StoryboardError
from wan_nb.protocol.events import Event, EventType
from wan_nb.core.params import GENERATION_ARGS
from wan_nb.storyboard.stitch import stitch
from wan_nb.core.task import Handle, Result
from . import folder as layout

__all__ = ["StoryboardRun", "StoryboardResult", "STEPS"]

STEPS = ("init", "story", "scenes", "video_params", "videos", "stitch", "complete")
# Overall progress (0-100) at the edges of each step. The scene videos get most of the bar
# because they take most of the time; inside it each scene's share is proportional to its
# frames x steps, and moves with each of its denoising steps.
_VIDEOS_START, _VIDEOS_END = 20.0, 90.0


@dataclass(frozen=True)
class StoryboardResult:
    """A finished storyboard: the stitched video and every scene's video."""

    storyboard_id: str
    final_video_path: Path
    scene_videos: list[Path]
    scene_results: list[Result | None]  # None for a scene reused from disk by resume()
    frames: int
    fps: float
    duration_s: float
    run_dir: Path
    video_url: str = ""
    scene_urls: list[str] = field(default_factory=list)

    @property
    def task_id(self) -> str:
        return self.storyboard_id

    @property
    def video_path(self) -> Path:
        return self.final_video_path

    def _ipython_display_(self) -> None:
        frontend.show("storyboard_result", self)

    def __repr__(self) -> str:
        return (f"StoryboardResult(storyboard_id={self.storyboard_id!r}, final_video_path="
                f"'{self.final_video_path}', scenes={len(self.scene_videos)}, frames={self.frames}, "
                f"duration_s={self.duration_s:.2f})")



class StoryboardRun(Handle):
    """One rendering of a storyboard (returned by :meth:`Storyboard.submit`).

    ``.id`` (the storyboard id), ``.status`` (``queued``, ``running``, ``completed``, ``failed``,
    ``cancelled``), ``.step``, ``.progress``, ``.scene_status`` (one entry a scene),
    ``.cancel()``, ``.pause()``, ``.resume()``, ``.result(timeout=None)``.
    """

    def __init__(self, board: Any, resume: bool) -> None:  # board: the plan.Storyboard it renders
        super().__init__(board.gen, board.id)
        self.board = board
        self.resume_scenes = resume
        self.step = "init"
        self.progress = 0.0
        self.message = ""
        n = len(board.scenes)
        self.scene_status = ["pending"] * n
        self.scene_progress = [0.0] * n
        self.scene_task_ids: list[str | None] = [None] * n
        self.scene_videos: list[Path] = []
        self._lock = threading.RLock()
        self._channel: Any = None
        self._running: dict[int, Any] = {}     # scene index (1-based) -> its task, while it renders
        self._scene_paths: dict[int, Path] = {}  # scenes made (or reused) so far
        self._last_step_event = float("-inf")
        work = [p["num_frames"] * p["steps"] for p in board.scene_params]
        total = float(sum(work)) or 1.0
        # How wide each scene's share of the videos step is.
        span = _VIDEOS_END - _VIDEOS_START
        self._scene_width = [span * w / total for w in work]

    # -- control -----------------------------------------------------------------------------
    def _cancelled(self) -> None:
        """Stop the running scene(s) (within one denoising step); the rest are skipped."""
        for task in list(self._running.values()):
            task.cancel()

    def pause(self, release_memory: bool = False) -> bool:
        """Hold the scene(s) being rendered at their next denoising step."""
        return any([task.pause(release_memory=release_memory) for task in list(self._running.values())])

    def resume(self) -> bool:
        return any([task.resume() for task in list(self._running.values())])

    def _ipython_display_(self) -> None:
        frontend.show("storyboard", self)

    def __repr__(self) -> str:
        return (f"StoryboardRun(id={self.id!r}, status={self.status!r}, step={self.step!r}, "
                f"progress={self.progress:.0f}%)")

    # -- events ------------------------------------------------------------------------------
    def _emit(self, step: str, status: str, progress: float, message: str, **data: Any) -> Event:
        with self._lock:
            self.step = step
            self.progress = round(max(self.progress, min(progress, 100.0)), 2)  # never goes back
            self.message = message
            payload = {"scene_videos": [str(p) for p in self.scene_videos],
                       "scene_count": len(self.board.scenes),
                       "scene_states": [{"status": s, "progress": round(p, 1)}
                                        for s, p in zip(self.scene_status, self.scene_progress)],
                       **data}
            return self._channel.publish(EventType.STORYBOARD_PROGRESS, step=step, status=status,
                                         progress=self.progress, message=message, data=payload)

    def _on_scene_progress(self, index: int, event: Event) -> None:
        """Re-publish a scene's denoising progress as overall storyboard progress (coalesced)."""
        if event.type != EventType.DETAILED_GENERATION_PROGRESS:
            return
        with self._lock:
            if index not in self._running:  # a late event of a scene already reported
                return
            scene_progress = float(event.data.get("progress", 0.0))
            self.scene_progress[index - 1] = max(self.scene_progress[index - 1], scene_progress)
            now = time.monotonic()
            if now - self._last_step_event < self.board.progress_interval:
                return
            self._last_step_event = now
            n = len(self.board.scenes)
            step, total = event.data.get("current_step", 0), event.data.get("total_steps", 0)
            overall = self._videos_progress()
            self._emit("videos", "in_progress", overall,
                       f"Scene {index}/{n}: {event.data.get('message') or event.data.get('stage')}",
                       scene_index=index, scene_task_id=event.task_id, scene_progress=round(scene_progress, 2),
                       current_step=step, total_steps=total)

    def _videos_progress(self) -> float:
        """Overall progress from every scene's share and its own progress: scenes rendering side by
        side (on a cluster) all move the bar; one after another, it is the running scene's place."""
        return _VIDEOS_START + sum(w * p / 100.0 for w, p in zip(self._scene_width, self.scene_progress))

    # -- the work ----------------------------------------------------------------------------
    def start(self) -> None:
        self._channel = self.generator.open_task(self, self.board.folder, layout.task_info(self.board))
        try:
            (self.board.folder / "scenes").mkdir(parents=True, exist_ok=True)
        except OSError:
            self._channel.close()
            raise
        thread = threading.Thread(target=self._work, name=f"wan_nb-storyboard-{self.id}", daemon=True)
        thread.start()

    def _work(self) -> None:
        try:
            self.status = "running"
            self._result = self._render()
            self.status = "completed"
        except _Cancelled as stop:
            self.status = "cancelled"
            self._error = StoryboardCancelled(self.id, self.step, stop.scene)
            n = len(self.board.scenes)
            where = f"during scene {stop.scene} of {n}" if stop.scene else f"during {self.step}"
            self._emit(self.step, "cancelled", self.progress, f"Cancelled {where}",
                       **({"cancelled_scene": stop.scene} if stop.scene else {}))
        except _SceneFailed as failure:
            self.status = "failed"
            self._error = failure.error
            self._emit(self.step, "failed", self.progress, str(failure.error),
                       failed_scene=failure.error.failed_scene, scene_task_id=failure.error.scene_task_id,
                       error_type=failure.error_type, error=failure.detail)
        except BaseException as exc:
            self.status = "failed"
            self._error = StoryboardError(f"storyboard failed during {self.step}: {type(exc).__name__}: {exc}",
                                          storyboard_id=self.id, step=self.step, failed_scene=None)
            self._error.__cause__ = exc
            self._emit(self.step, "failed", self.progress, str(self._error), failed_scene=None,
                       error_type=type(exc).__name__, error=str(exc))
            if not isinstance(exc, Exception):
                raise
        finally:
            layout.write_state(self)
            self._channel.close()
            self.mark_done()

    def _check_cancel(self, scene: int | None = None) -> None:
        if self._cancel.is_set():
            raise _Cancelled(scene)

    def _render(self) -> StoryboardResult:
        board = self.board
        n = len(board.scenes)
        self._emit("init", "in_progress", 0, "Starting storyboard...", storyboard_id=self.id,
                   transition=board.transition, fps=board.fps, continuity=board.continuity)
        self._check_cancel()
        prompts = [s.prompt for s in board.scenes]
        self._emit("story", "in_progress", 5,
                   "Reading the story..." if board.story else f"Using the {n} scene(s) given")
        self._emit("story", "completed", 10, f"Story has {n} scene(s)", scenes=prompts)
        self._check_cancel()
        self._emit("scenes", "in_progress", 12, f"Planning {n} scene(s)...")
        frames = board.scene_frames
        self._emit("scenes", "completed", 15,
                   f"Planned {n} scene(s): {sum(frames)} frames, {sum(frames) / board.fps:.2f} s at {board.fps:g} fps",
                   scenes=prompts, scene_frames=frames)
        self._check_cancel()
        self._emit("video_params", "in_progress", 17, "Preparing video generation parameters...")
        reusable = layout.reusable_scenes(board) if self.resume_scenes else [False] * n
        kept = sum(reusable)
        self._emit("video_params", "completed", _VIDEOS_START,
                   f"Prepared {n} video generation parameter set(s)" + (f"; {kept} scene(s) already on disk" if kept else ""),
                   scene_params=board.plan(), reused_scenes=[i + 1 for i, r in enumerate(reusable) if r])
        self._emit("videos", "in_progress", _VIDEOS_START,
                   f"Generating {n - kept} scene video(s) (may take several minutes)...")

        found: dict[int, Result | None] = {}
        if board.continuity or self.generator.workers < 2:
            previous_regenerated = False
            for index in range(1, n + 1):
                self._check_cancel(index)
                # With continuity a scene depends on the one before: once one is re-rendered, so is the rest.
                reuse = reusable[index - 1] and not (board.continuity and previous_regenerated)
                if reuse:
                    found[index] = None
                    self._scene_done(index, board.scene_path(index), None, reused=True)
                    continue
                previous_regenerated = True
                found[index] = self._render_scene(index)
        else:  # independent scenes and a generator that runs several tasks at once: all together
            for index in [i for i in range(1, n + 1) if reusable[i - 1]]:
                found[index] = None
                self._scene_done(index, board.scene_path(index), None, reused=True)
            found.update(_render_together(self, [i for i in range(1, n + 1) if not reusable[i - 1]]))
        results = [found[index] for index in range(1, n + 1)]

        self._emit("videos", "completed", _VIDEOS_END, f"All {n} scene video(s) ready")
        self._check_cancel()
        how = (f"crossfade {board.crossfade:g} s" if board.transition == "crossfade" and n > 1 else "cuts")
        self._emit("stitch", "in_progress", _VIDEOS_END + 2, f"Stitching {n} scene(s) with {how}...")
        final = stitch(self.scene_videos, board.final_path, fps=board.fps, transition=board.transition,
                       crossfade=board.crossfade)
        from wan_nb.models.video_io import frame_count

        total_frames = frame_count(final)
        self._emit("stitch", "completed", 98, f"Stitched the final video: {total_frames} frames, "
                   f"{total_frames / board.fps:.2f} s", final_video_path=str(final))
        result = StoryboardResult(
            storyboard_id=self.id, final_video_path=final, scene_videos=list(self.scene_videos),
            scene_results=results, frames=total_frames, fps=board.fps,
            duration_s=round(total_frames / board.fps, 4), run_dir=board.folder,
            video_url=layout.video_url(self.id), scene_urls=[layout.scene_url(self.id, i) for i in range(1, n + 1)])
        self._emit("complete", "completed", 100, "Storyboard complete!",
                   final_video_path=str(final), video_url=result.video_url, scene_urls=result.scene_urls,
                   frames=total_frames, duration_s=result.duration_s, fps=board.fps)
        return result

    def _scene_kwargs(self, index: int) -> dict[str, Any]:
        board = self.board
        params = dict(board.scene_params[index - 1])
        kwargs = {k: params[k] for k in GENERATION_ARGS if k in params}
        if board.continuity in ("last_frame", "flf2v") and index > 1 and board.scenes[index - 1].image is None:
            from wan_nb.models.video_io import read_frames

            kwargs["image"] = read_frames(self.scene_videos[index - 2])[-1]
        return kwargs

    def _render_scene(self, index: int) -> Result:
        return self._await_scene(index, *self._submit_scene(index))

    def _submit_scene(self, index: int) -> tuple[Any, Callable[[], None]]:
        board = self.board
        n = len(board.scenes)
        scene = board.scenes[index - 1]
        with self._lock:
            self.scene_status[index - 1] = "running"
        try:
            task = self.generator.submit(scene.prompt, parent_id=self.id, **self._scene_kwargs(index))
        except Exception as exc:
            self._fail_scene(index, None, exc)
        self.scene_task_ids[index - 1] = task.id
        with self._lock:
            self._running[index] = task
        off = self.generator.subscribe(lambda event: self._on_scene_progress(index, event), task_id=task.id,
                                       types=[EventType.DETAILED_GENERATION_PROGRESS])
        self._emit("videos", "in_progress", self._videos_progress(), f"Scene {index}/{n}: starting",
                   scene_index=index, scene_task_id=task.id, scene_prompt=scene.prompt)
        if self._cancel.is_set():  # cancel() ran between submit and the task being in _running
            task.cancel()
        return task, off

    def _await_scene(self, index: int, task: Any, off: Callable[[], None]) -> Result:
        try:
            result = task.result()
        except GenerationCancelled:
            with self._lock:
                self._running.pop(index, None)
                self.scene_status[index - 1] = "cancelled"
            raise _Cancelled(index)
        except Exception as exc:
            self._fail_scene(index, task.id, exc)
        finally:
            off()
        self._scene_done(index, result.video_path, result)
        return result

    def _fail_scene(self, index: int, task_id: str | None, exc: BaseException) -> None:
        n = len(self.board.scenes)
        with self._lock:
            self._running.pop(index, None)
            self.scene_status[index - 1] = "failed"
        cause = exc.__cause__ if exc.__cause__ is not None and task_id else exc
        error_type = getattr(exc, "error_type", type(exc).__name__)
        detail = str(cause) or error_type
        error = StoryboardError(f"Scene {index} of {n} failed: {error_type}: {detail}", storyboard_id=self.id,
                                step="videos", failed_scene=index, scene_task_id=task_id)
        error.__cause__ = exc
        raise _SceneFailed(error, error_type, detail)

    def _scene_done(self, index: int, source: Path, result: Result | None, reused: bool = False) -> None:
        board = self.board
        n = len(board.scenes)
        target = board.scene_path(index)
        if not reused:
            layout.keep_scene(board, index, source, result.task_id if result else None)
        with self._lock:
            self._running.pop(index, None)
            self.scene_status[index - 1] = "reused" if reused else "completed"
            self.scene_progress[index - 1] = 100.0
            self._scene_paths[index] = target
            # Scene n is item n - 1 of scene_videos (servers serve .../scenes/n from it): list the
            # made scenes up to the first one still missing (scenes finishing out of order wait).
            self.scene_videos = []
            while len(self.scene_videos) + 1 in self._scene_paths:
                self.scene_videos.append(self._scene_paths[len(self.scene_videos) + 1])
            overall = self._videos_progress()
            self._emit("videos", "in_progress", overall,
                       f"Scene {index}/{n} " + ("already on disk" if reused else "done"),
                       scene_index=index, scene_video=str(target), scene_url=layout.scene_url(self.id, index),
                       scene_task_id=result.task_id if result else None, scene_reused=reused)


def _render_together(run: StoryboardRun, indexes: list[int]) -> dict[int, Result]:
    """Submit every scene, then take each as it finishes; one that fails or is cancelled ends the rest."""
    waiting: dict[int, tuple[Any, Callable[[], None]]] = {}
    done: dict[int, Result] = {}
    try:
        for index in indexes:
            run._check_cancel(index)
            waiting[index] = run._submit_scene(index)
        while waiting:
            finished = [i for i, (task, _) in waiting.items() if task.done()]
            if not finished:
                next(iter(waiting.values()))[0].wait(0.05)
                continue
            for index in finished:
                done[index] = run._await_scene(index, *waiting.pop(index))
        return done
    finally:
        for task, off in waiting.values():
            task.cancel()
            off()
        with run._lock:
            for index in waiting:
                run._running.pop(index, None)


class _Cancelled(Exception):
    def __init__(self, scene: int | None) -> None:
        super().__init__(scene)
        self.scene = scene


class _SceneFailed(Exception):
    def __init__(self, error: StoryboardError, error_type: str, detail: str) -> None:
        super().__init__(str(error))
        self.error = error
        self.error_type = error_type
        self.detail = detail


