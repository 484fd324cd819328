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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wan_nb.protocol import frontend
from wan_nb.protocol.errors import StoryboardCancelled, StoryboardError
from wan_nb.protocol.events import Event, EventType
from wan_nb.storyboard.stitch import stitch
from wan_nb.core.task import Handle, Result
from . import folder as layout
from wan_nb.post.options import post_steps
from .scenes import VIDEOS_END, VIDEOS_START, SceneFailure, SceneRenders, StopAtScene

__all__ = ["StoryboardRun", "StoryboardResult", "STEPS"]

STEPS = ("init", "story", "scenes", "video_params", "videos", "stitch", "complete")
STITCHED = 93.0  # overall progress once the scenes are joined; the film's post-processing fills the rest to 98


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
        self._channel: Any = None
        self.scenes = SceneRenders(board, self.generator, self.id, self._emit, self._cancel)
        self.scenes.resume_checkpoints = resume

    # What each scene is doing, for the panel, the run's task.json and callers (one entry a scene).
    @property
    def scene_status(self) -> list[str]:
        return self.scenes.status

    @property
    def scene_progress(self) -> list[float]:
        return self.scenes.progress

    @property
    def scene_task_ids(self) -> list[str | None]:
        return self.scenes.task_ids

    @property
    def scene_videos(self) -> list[Path]:
        return self.scenes.videos

    # -- control -----------------------------------------------------------------------------
    def cancel(self, keep: bool = False) -> bool:
        """Stop the running scene(s) within one denoising step; the rest are skipped. ``keep=True``
        keeps each stopped scene's checkpoint, so :meth:`Storyboard.resume` continues it mid-scene."""
        self.scenes.keep_checkpoints = bool(keep)
        return super().cancel()

    def _cancelled(self) -> None:
        for task in self.scenes.running_tasks():
            task.cancel(keep=self.scenes.keep_checkpoints)

    def pause(self, release_memory: bool = False) -> bool:
        """Hold the scene(s) being rendered at their next denoising step."""
        return any([task.pause(release_memory=release_memory) for task in self.scenes.running_tasks()])

    def resume(self) -> bool:
        return any([task.resume() for task in self.scenes.running_tasks()])

    def _ipython_display_(self) -> None:
        frontend.show("storyboard", self)

    def __repr__(self) -> str:
        return (f"StoryboardRun(id={self.id!r}, status={self.status!r}, step={self.step!r}, "
                f"progress={self.progress:.0f}%)")

    # -- events ------------------------------------------------------------------------------
    def _emit(self, step: str, status: str, progress: float, message: str, **data: Any) -> Event:
        with self.scenes.lock:
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
        except StopAtScene as stop:
            self.status = "cancelled"
            self._error = StoryboardCancelled(self.id, self.step, stop.scene)
            n = len(self.board.scenes)
            where = f"during scene {stop.scene} of {n}" if stop.scene else f"during {self.step}"
            kept = {} if stop.kept_step is None else {"checkpoint_step": stop.kept_step}
            said = f"; kept at step {stop.kept_step}: resume() continues the scene from there" if kept else ""
            self._emit(self.step, "cancelled", self.progress, f"Cancelled {where}{said}",
                       **({"cancelled_scene": stop.scene} if stop.scene else {}), **kept)
        except SceneFailure as failure:
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

    def _render(self) -> StoryboardResult:
        board = self.board
        n = len(board.scenes)
        self._emit("init", "in_progress", 0, "Starting storyboard...", storyboard_id=self.id,
                   transition=board.transition, fps=board.fps, continuity=board.continuity)
        self.scenes.check_cancel()
        prompts = [s.prompt for s in board.scenes]
        self._emit("story", "in_progress", 5,
                   "Reading the story..." if board.story else f"Using the {n} scene(s) given")
        self._emit("story", "completed", 10, f"Story has {n} scene(s)", scenes=prompts)
        self.scenes.check_cancel()
        self._emit("scenes", "in_progress", 12, f"Planning {n} scene(s)...")
        frames = board.scene_frames
        self._emit("scenes", "completed", 15,
                   f"Planned {n} scene(s): {sum(frames)} frames, {sum(frames) / board.fps:.2f} s at {board.fps:g} fps",
                   scenes=prompts, scene_frames=frames)
        self.scenes.check_cancel()
        self._emit("video_params", "in_progress", 17, "Preparing video generation parameters...")
        reusable = layout.reusable_scenes(board) if self.resume_scenes else [False] * n
        kept = sum(reusable)
        self._emit("video_params", "completed", VIDEOS_START,
                   f"Prepared {n} video generation parameter set(s)" + (f"; {kept} scene(s) already on disk" if kept else ""),
                   scene_params=board.plan(), reused_scenes=[i + 1 for i, r in enumerate(reusable) if r])
        self._emit("videos", "in_progress", VIDEOS_START,
                   f"Generating {n - kept} scene video(s) (may take several minutes)...")

        found: dict[int, Result | None] = {}
        if board.continuity or self.generator.workers < 2:
            previous_regenerated = False
            for index in range(1, n + 1):
                self.scenes.check_cancel(index)
                # With continuity a scene depends on the one before: once one is re-rendered, so is the rest.
                reuse = reusable[index - 1] and not (board.continuity and previous_regenerated)
                if reuse:
                    found[index] = None
                    self.scenes.done(index, board.scene_path(index), None, reused=True)
                    continue
                previous_regenerated = True
                found[index] = self.scenes.render(index)
        else:  # independent scenes and a generator that runs several tasks at once: all together
            for index in [i for i in range(1, n + 1) if reusable[i - 1]]:
                found[index] = None
                self.scenes.done(index, board.scene_path(index), None, reused=True)
            found.update(self.scenes.render_together([i for i in range(1, n + 1) if not reusable[i - 1]]))
        results = [found[index] for index in range(1, n + 1)]

        self._emit("videos", "completed", VIDEOS_END, f"All {n} scene video(s) ready")
        self.scenes.check_cancel()
        how = (f"crossfade {board.crossfade:g} s" if board.transition == "crossfade" and n > 1 else "cuts")
        self._emit("stitch", "in_progress", VIDEOS_END + 2, f"Stitching {n} scene(s) with {how}...")
        steps = post_steps(board.post)
        final = stitch(self.scene_videos, layout.original_path(board.folder) if steps else board.final_path,
                       fps=board.fps, transition=board.transition, crossfade=board.crossfade)
        if steps:  # the stitched film, interpolated / upscaled once; the unprocessed one stays beside it
            final = self._post_process(final)
        from wan_nb.models.video_io import frame_count

        total_frames = frame_count(final)
        fps = board.output_fps
        self._emit("stitch", "completed", 98, f"Stitched the final video: {total_frames} frames, "
                   f"{total_frames / fps:.2f} s", final_video_path=str(final))
        result = StoryboardResult(
            storyboard_id=self.id, final_video_path=final, scene_videos=list(self.scene_videos),
            scene_results=results, frames=total_frames, fps=fps,
            duration_s=round(total_frames / fps, 4), run_dir=board.folder,
            video_url=layout.video_url(self.id), scene_urls=[layout.scene_url(self.id, i) for i in range(1, n + 1)])
        self._emit("complete", "completed", 100, "Storyboard complete!",
                   final_video_path=str(final), video_url=result.video_url, scene_urls=result.scene_urls,
                   frames=total_frames, duration_s=result.duration_s, fps=fps)
        return result

    def _post_process(self, stitched: Path) -> Path:
        """The film's interpolation / upscaling (wan_nb.post), reported as the stitch step's progress
        between STITCHED and 98 with ``post_step`` / ``post_done`` / ``post_total``; cancellable."""
        from wan_nb.models.video_io import read_frames, write_mp4
        from wan_nb.post.stage import default_device, process_frames

        frames = read_frames(stitched)
        self._emit("stitch", "in_progress", STITCHED, f"Stitched {len(frames)} frames; post-processing the film...")

        def progress(message: str, fraction: float, **data: Any) -> None:
            data.pop("remaining", None)
            self._emit("stitch", "in_progress", STITCHED + (98 - STITCHED) * fraction, message, **data)

        done = process_frames(frames, dict(self.board.post, num_frames=len(frames)), progress=progress,
                              check_cancel=self.scenes.check_cancel, device=default_device(), start=0.0)
        return write_mp4(done.frames, self.board.final_path, fps=done.fps)
