"""Storyboards: several scenes generated one after another and stitched into one video.

>>> from wan_nb import Generator, Storyboard, Scene
>>> gen = Generator(model="tiny")
>>> board = Storyboard(gen, ["a fox wakes up in the snow", Scene("the fox runs", seconds=2)],
...                    transition="crossfade", crossfade=0.25)
>>> result = board.run()            # blocks; in a notebook shows one row per scene
>>> result.final_video_path, result.scene_videos

A storyboard is a task of its own: it has an id, publishes ``storyboard_progress`` events on
the generator's bus (so ``gen.subscribe``, the run journal and every Jupyter server see them)
and has a run folder ``<gen.runs_dir>/<storyboard_id>/``::

    task.json  events.jsonl  storyboard.json   what was asked and what happened
    scenes/scene_01.mp4 (+ scene_01.json)      each scene, as soon as it is done
    final.mp4                                  the stitched video

Its events follow the steps of the ``002`` seed, ``init -> story -> scenes -> video_params
-> videos -> stitch -> complete``. While the scene videos render, the overall progress moves
with every scene *and* every denoising step (the seed sat at one percentage for minutes). Each
scene is generated as an ordinary generator task whose ``parent_id`` is the storyboard's id, so
its own detailed events are there too.

A failed scene ends the storyboard with ``status: "failed"`` naming the scene; the scenes
already made stay on disk and :meth:`Storyboard.resume` makes only what is missing.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from . import journal
from .events import Event, EventType, dumps
from .generator import GenerationCancelled, Generator, Result, _new_task_id
from .params import GENERATION_ARGS, InvalidParameter, build_params, public_params
from .stitch import check_transition, stitch, stitched_frame_count

__all__ = ["Scene", "Storyboard", "StoryboardRun", "StoryboardResult", "StoryboardError",
           "StoryboardCancelled", "split_story", "video_url", "scene_url"]

# Overall progress (0-100) at the edges of each step. The scene videos get most of the bar
# because they take most of the time; inside it each scene's share is proportional to its
# frames x steps, and moves with each of its denoising steps.
_VIDEOS_START, _VIDEOS_END = 20.0, 90.0
STEPS = ("init", "story", "scenes", "video_params", "videos", "stitch", "complete")

# What a Scene may set for itself beyond prompt/frames/seed/loras/image. fps is the
# storyboard's (one video has one frame rate).
_SCENE_OPTIONS = tuple(a for a in GENERATION_ARGS
                       if a not in ("num_frames", "seed", "loras", "image", "fps"))


def video_url(storyboard_id: str) -> str:
    """The final video's URL relative to the Jupyter server's base URL."""
    return f"wan-nb/api/tasks/{storyboard_id}/video"


def scene_url(storyboard_id: str, index: int) -> str:
    """Scene ``index`` (1-based) of a storyboard, relative to the server's base URL."""
    return f"wan-nb/api/tasks/{storyboard_id}/video/scenes/{index}"


class StoryboardError(RuntimeError):
    """A storyboard failed; ``failed_scene`` (1-based) says which scene, or None (e.g. stitching)."""

    def __init__(self, message: str, *, storyboard_id: str, step: str, failed_scene: int | None,
                 scene_task_id: str | None = None) -> None:
        super().__init__(message)
        self.storyboard_id = storyboard_id
        self.step = step
        self.failed_scene = failed_scene
        self.scene_task_id = scene_task_id


class StoryboardCancelled(RuntimeError):
    """The storyboard was cancelled; ``scene`` is the scene that was running (1-based) or None."""

    def __init__(self, storyboard_id: str, step: str, scene: int | None) -> None:
        where = f"during scene {scene}" if scene else f"during {step}"
        super().__init__(f"storyboard {storyboard_id} was cancelled {where}")
        self.storyboard_id = storyboard_id
        self.step = step
        self.scene = scene


class Scene:
    """One shot of a storyboard.

    ``Scene(prompt, num_frames=None, seconds=None, seed=None, loras=None, image=None, **options)``:
    give the length as ``num_frames`` or ``seconds`` (rounded to the nearest frame count the
    model accepts), or neither for the model's default. ``options`` are further generation
    arguments for this scene only (``steps``, ``guidance_scale``, ``negative_prompt``, ...).
    """

    def __init__(self, prompt: str, num_frames: int | None = None, *, seconds: float | None = None,
                 seed: int | None = None, loras: Mapping[str, float] | None = None, image: Any = None,
                 **options: Any) -> None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"Scene(prompt={prompt!r}): give a non-empty text prompt")
        if num_frames is not None and seconds is not None:
            raise ValueError("Scene: give num_frames or seconds, not both")
        if seconds is not None and (not isinstance(seconds, (int, float)) or isinstance(seconds, bool)
                                    or not seconds > 0):
            raise ValueError(f"Scene(seconds={seconds!r}): give a positive number of seconds, e.g. 2.0")
        unknown = sorted(set(options) - set(_SCENE_OPTIONS))
        if unknown:
            hint = " (fps is set on the Storyboard: one video has one frame rate)" if "fps" in unknown else ""
            raise TypeError(f"Scene: unknown argument(s) {', '.join(unknown)}{hint}; valid ones are "
                            f"num_frames, seconds, seed, loras, image, {', '.join(_SCENE_OPTIONS)}")
        self.prompt = prompt.strip()
        self.num_frames = num_frames
        self.seconds = seconds
        self.seed = seed
        self.loras = dict(loras) if loras is not None else None
        self.image = image
        self.options = dict(options)

    def __repr__(self) -> str:
        parts = [repr(self.prompt)]
        for name in ("num_frames", "seconds", "seed", "loras"):
            if getattr(self, name) is not None:
                parts.append(f"{name}={getattr(self, name)!r}")
        if self.image is not None:
            parts.append("image=<image>" if not isinstance(self.image, (str, os.PathLike))
                         else f"image={str(self.image)!r}")
        parts += [f"{k}={v!r}" for k, v in self.options.items()]
        return f"Scene({', '.join(parts)})"


def split_story(text: str) -> list[str]:
    """The default story writer: one scene per paragraph, or per sentence for a single paragraph.

    Deterministic and instant. Whitespace inside a scene is collapsed to single spaces.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the story is empty; give some text, e.g. 'A fox wakes. It runs to the river.'")
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    if len(paragraphs) == 1:
        paragraphs = [s for s in re.split(r"(?<=[.!?…])\s+", paragraphs[0]) if s.strip()]
    return [" ".join(p.split()) for p in paragraphs]


def _with_style(prompt: str, style: str | None) -> str:
    if not style:
        return prompt
    return f"{prompt.rstrip(' .')}, {style.strip()}"


def _frames_for_seconds(seconds: float, fps: float, temporal_factor: int) -> int:
    # Wan accepts k*t + 1 frames; take the nearest such count to seconds * fps.
    wanted = seconds * fps
    return max(1, int(round((wanted - 1) / temporal_factor)) * temporal_factor + 1)


def _check_image_source(index: int, image: Any) -> None:
    if image is None:
        return
    from . import models

    try:  # cheap: a path must exist, an array must have a picture's shape (no decoding here)
        models.check_image(image)
    except ValueError as exc:
        raise ValueError(f"scene {index}: {exc}") from None


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
        from .widgets.storyboard_panel import show_storyboard_result

        show_storyboard_result(self)

    def __repr__(self) -> str:
        return (f"StoryboardResult(storyboard_id={self.storyboard_id!r}, final_video_path="
                f"'{self.final_video_path}', scenes={len(self.scene_videos)}, frames={self.frames}, "
                f"duration_s={self.duration_s:.2f})")


class Storyboard:
    """Scenes to generate with one generator, and how to join them.

    Parameters
    ----------
    gen : the :class:`~wan_nb.Generator` that renders every scene.
    scenes : :class:`Scene` objects or plain prompt strings, in order.
    transition : ``"cut"`` or ``"crossfade"``; ``crossfade`` is its length in seconds (snapped
        to whole frames). A crossfade of ``d`` s makes the final video ``(n - 1) * d`` s shorter.
    fps : frame rate of every scene and of the final video (default: the model's).
    continuity : ``None`` or ``"last_frame"``: start each scene from the previous scene's last
        frame (needs an image-to-video model, e.g. ``"tiny-i2v"``, ``"wan2.2-ti2v-5b"``).
    seed : scene ``i`` (0-based) without its own seed uses ``seed + i``; default: random, fixed
        when the storyboard is made, so :meth:`resume` renders the same scenes.
    id : the storyboard id (and run folder name); default: a new one.
    progress_interval : at most one re-published denoising-step progress event per this many
        seconds (scene boundaries are always published).
    **defaults : generation arguments shared by every scene (``height``, ``width``, ``steps``,
        ``guidance_scale``, ``negative_prompt``, ``num_frames``, ...); a Scene's own win.
    """

    def __init__(self, gen: Generator, scenes: Iterable[Scene | str], *, transition: str = "cut",
                 crossfade: float = 0.5, fps: float | None = None, continuity: str | None = None,
                 seed: int | None = None, id: str | None = None, progress_interval: float = 0.2,
                 story: str | None = None, **defaults: Any) -> None:
        if not isinstance(gen, Generator):
            raise TypeError(f"Storyboard(gen=...): expected a wan_nb.Generator, got {type(gen).__name__}; "
                            "make one with Generator(model='tiny')")
        scenes = [Scene(s) if isinstance(s, str) else s for s in (scenes or [])]
        if not scenes:
            raise ValueError("Storyboard needs at least one scene, e.g. scenes=['a fox wakes', 'the fox runs']")
        for index, scene in enumerate(scenes, 1):
            if not isinstance(scene, Scene):
                raise TypeError(f"scene {index}: expected a Scene or a prompt string, got {type(scene).__name__}")
        unknown = sorted(set(defaults) - set(GENERATION_ARGS) - {"fps"})
        if unknown:
            raise TypeError(f"Storyboard: unknown argument(s) {', '.join(unknown)}; shared generation "
                            f"arguments are {', '.join(a for a in GENERATION_ARGS if a not in ('image', 'fps'))}")
        if "image" in defaults:
            raise TypeError("Storyboard: give image= to a Scene (e.g. the first one), not to the storyboard")
        if continuity not in (None, "last_frame"):
            raise ValueError(f"continuity={continuity!r}: choose None or 'last_frame'")
        if continuity and not gen.spec.accepts_image:
            raise ValueError(f"continuity='last_frame' needs an image-to-video model; the generator runs "
                             f"{gen.model!r} (text-to-video). Use e.g. Generator(model='tiny-i2v') or "
                             "'wan2.2-ti2v-5b'.")
        if not isinstance(progress_interval, (int, float)) or progress_interval < 0:
            raise ValueError(f"progress_interval={progress_interval!r}: give seconds >= 0, e.g. 0.2")
        fps = gen.spec.defaults.get("fps", 16) if fps is None else fps
        if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not fps > 0:
            raise ValueError(f"fps={fps!r}: give a positive frame rate, e.g. {gen.spec.defaults.get('fps', 16)}")
        if seed is None:
            seed = random.SystemRandom().randrange(0, 2**31)
        elif not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed={seed!r}: give a non-negative integer (or None for a random one)")

        self.gen = gen
        self.scenes = scenes
        self.transition = transition
        self.crossfade = crossfade
        self.fps = fps
        self.continuity = continuity
        self.seed = seed
        self.defaults = dict(defaults)
        self.progress_interval = float(progress_interval)
        self.story = story
        self.id = id or _new_task_id()
        self._run: StoryboardRun | None = None
        # Everything is checked now, before any model work: a typo costs nothing.
        self._params = [self._scene_params(i, s) for i, s in enumerate(scenes, 1)]
        sizes = {(p["height"], p["width"]) for p in self._params}
        if len(sizes) > 1:
            raise ValueError(f"every scene must have the same height and width to be stitched; got "
                             f"{sorted(sizes)}. Set height= and width= on the Storyboard instead.")
        check_transition(transition, crossfade, fps, self.scene_frames)

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def from_story(cls, text: str, writer: Callable[[str], Sequence[str]] | None = None,
                   style: str | None = None, *, gen: Generator | None = None, **kwargs: Any) -> "Storyboard":
        """Split a story into scene prompts and make a storyboard of them.

        ``writer`` is any callable ``story -> list of scene prompts``; the default,
        :func:`split_story`, makes one scene per paragraph (one per sentence for a single
        paragraph). ``style`` is a phrase appended to every prompt (``"watercolor, soft light"``)
        so the scenes look alike. ``gen`` is the generator (default: ``Generator()``); other
        keyword arguments go to :class:`Storyboard`. The writer runs now, so the prompts can be
        read (``board.scenes``) and edited before any video is made.

        A language model as the writer, with a transformers text-generation pipeline::

            from transformers import pipeline
            llm = pipeline("text-generation", model="Qwen/Qwen2.5-0.5B-Instruct")

            def llm_writer(story: str) -> list[str]:
                ask = [{"role": "user", "content":
                        "Split this story into 3 to 6 short, visual scene descriptions for a video "
                        "model, one per line, nothing else:\\n\\n" + story}]
                reply = llm(ask, max_new_tokens=300, do_sample=False)[0]["generated_text"][-1]["content"]
                return [line.strip(" -*0123456789.") for line in reply.splitlines() if line.strip()]

            board = Storyboard.from_story(story, writer=llm_writer, style="cinematic", gen=gen)
        """
        if isinstance(text, Generator):
            raise TypeError("from_story(text, ..., gen=gen): give the story first and the generator as gen=")
        if not isinstance(text, str) or not text.strip():
            raise ValueError("from_story: the story is empty; give some text")
        if writer is not None and not callable(writer):
            raise TypeError(f"writer={writer!r}: give a callable story -> list of scene prompts")
        if style is not None and not isinstance(style, str):
            raise TypeError(f"style={style!r}: give a phrase, e.g. style='watercolor, soft light'")
        prompts = (writer or split_story)(text)
        if isinstance(prompts, str) or not isinstance(prompts, Sequence):
            raise TypeError(f"the writer returned {type(prompts).__name__}; it must return a list of scene "
                            "prompt strings")
        prompts = [p.strip() for p in prompts if isinstance(p, str) and p.strip()]
        if not prompts:
            raise ValueError("the writer returned no scene prompts; check the story or the writer")
        return cls(gen if gen is not None else Generator(), [_with_style(p, style) for p in prompts],
                   story=text, **kwargs)

    def _scene_params(self, index: int, scene: Scene) -> dict[str, Any]:
        kwargs: dict[str, Any] = {**self.defaults, **scene.options, "fps": self.fps}
        if scene.num_frames is not None:
            kwargs["num_frames"] = scene.num_frames
        elif scene.seconds is not None:
            kwargs["num_frames"] = _frames_for_seconds(scene.seconds, self.fps, self.gen.spec.temporal_factor)
        kwargs["seed"] = scene.seed if scene.seed is not None else self.seed + index - 1
        if scene.loras is not None:
            kwargs["loras"] = scene.loras
        _check_image_source(index, scene.image)
        kwargs["image"] = scene.image
        try:
            params = build_params(self.gen.spec, scene.prompt, kwargs, known_loras=self.gen.loras)
        except (ValueError, TypeError) as exc:
            raise _in_scene(exc, f"scene {index} ({scene.prompt[:40]!r})") from exc
        has_image = scene.image is not None or (self.continuity and index > 1)
        if getattr(self.gen.spec, "requires_image", self.gen.spec.kind == "i2v") and not has_image:
            raise ValueError(f"scene {index}: {self.gen.model!r} is an image-to-video model; give the first "
                             "scene an image, e.g. Scene(prompt, image='start.png')")
        return params

    # -- facts -------------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        """The run folder, ``<gen.runs_dir>/<id>/``."""
        return self.gen.runs_dir / self.id

    @property
    def scene_frames(self) -> list[int]:
        return [p["num_frames"] for p in self._params]

    @property
    def frames(self) -> int:
        """Frames of the final video."""
        return stitched_frame_count(self.scene_frames, self.fps, self.transition, self.crossfade)

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps

    def scene_path(self, index: int) -> Path:
        """Where scene ``index`` (1-based) is kept: ``scenes/scene_01.mp4``, ..."""
        return self.folder / "scenes" / f"scene_{index:02d}.mp4"

    @property
    def final_path(self) -> Path:
        return self.folder / "final.mp4"

    # -- running -----------------------------------------------------------------------------
    def submit(self, *, resume: bool = False) -> "StoryboardRun":
        """Start rendering on a thread of its own; returns a :class:`StoryboardRun` at once.

        ``resume=True`` reuses scene videos already in the run folder that were made with the
        same parameters, and renders only the rest.
        """
        if self._run is not None and not self._run.done():
            raise RuntimeError(f"storyboard {self.id} is already running; wait for it or cancel() it")
        self._run = StoryboardRun(self, resume=resume)
        self._run._start()
        return self._run

    def run(self, *, progress: str | bool = "auto") -> StoryboardResult:
        """Render every scene and the final video; block until done (Ctrl-C cancels)."""
        return self._wait(self.submit(), progress)

    def resume(self, *, progress: str | bool = "auto") -> StoryboardResult:
        """Like :meth:`run`, but keep the scenes already on disk and render only what is missing."""
        return self._wait(self.submit(resume=True), progress)

    def _wait(self, handle: "StoryboardRun", progress: str | bool) -> StoryboardResult:
        if progress not in (False, "none") and "ipykernel" in sys.modules:
            from .widgets import widgets_available

            if widgets_available():
                from IPython.display import display

                display(handle)
        try:
            return handle.result()
        except KeyboardInterrupt:
            handle.cancel()
            handle.wait(timeout=30)
            raise

    def cancel(self) -> bool:
        """Cancel the running storyboard, if any."""
        return self._run.cancel() if self._run is not None else False

    @property
    def current(self) -> "StoryboardRun | None":
        """The latest run (running or finished)."""
        return self._run

    def plan(self) -> list[dict[str, Any]]:
        """The parameter set of every scene (what each scene task will be given)."""
        return [public_params(p) for p in self._params]

    def _ipython_display_(self) -> None:
        from .widgets.storyboard_panel import show_storyboard

        show_storyboard(self)

    def __repr__(self) -> str:
        return (f"Storyboard(id={self.id!r}, scenes={len(self.scenes)}, transition={self.transition!r}, "
                f"frames={self.frames}, fps={self.fps:g})")


class StoryboardRun:
    """One rendering of a storyboard (returned by :meth:`Storyboard.submit`).

    ``.id`` (the storyboard id), ``.status`` (``queued``, ``running``, ``completed``, ``failed``,
    ``cancelled``), ``.step``, ``.progress``, ``.scene_status`` (one entry a scene),
    ``.cancel()``, ``.result(timeout=None)``.
    """

    def __init__(self, board: Storyboard, resume: bool) -> None:
        self.board = board
        self.id = board.id
        self.generator = board.gen
        self.resume = resume
        self.status = "queued"
        self.step = "init"
        self.progress = 0.0
        self.message = ""
        n = len(board.scenes)
        self.scene_status = ["pending"] * n
        self.scene_progress = [0.0] * n
        self.scene_task_ids: list[str | None] = [None] * n
        self.scene_videos: list[Path] = []
        self._lock = threading.RLock()
        self._cancel = threading.Event()
        self._done = threading.Event()
        self._current_task: Any = None
        self._current_scene: int | None = None  # 1-based, while a scene renders
        self._last_step_event = float("-inf")
        self._result: StoryboardResult | None = None
        self._error: BaseException | None = None
        work = [p["num_frames"] * p["steps"] for p in board._params]
        total = float(sum(work)) or 1.0
        # Where each scene's share of the videos step begins, and how wide it is.
        span = _VIDEOS_END - _VIDEOS_START
        self._scene_start = [_VIDEOS_START + span * sum(work[:i]) / total for i in range(n)]
        self._scene_width = [span * w / total for w in work]

    @property
    def task_id(self) -> str:
        return self.id

    # -- control -----------------------------------------------------------------------------
    def cancel(self) -> bool:
        """Stop the running scene (within one denoising step) and skip the rest."""
        if self._done.is_set():
            return False
        self._cancel.set()
        task = self._current_task
        if task is not None:
            task.cancel()
        return True

    def done(self) -> bool:
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def result(self, timeout: float | None = None) -> StoryboardResult:
        """Wait; return the :class:`StoryboardResult` or raise why there is none."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"storyboard {self.id} is still {self.status} after {timeout} s")
        self.generator._bus.drain(timeout=2.0)  # listeners have seen the end before we return
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    @property
    def events(self) -> list[Event]:
        """This storyboard's own ``storyboard_progress`` events so far."""
        return self.generator._bus.history(self.id)

    def subscribe(self, callback: Callable[[Event], Any], replay: bool = True) -> Callable[[], None]:
        """``callback(event)`` for the storyboard's events; ``replay`` first sends the past ones."""
        return self.generator._bus.subscribe(callback, task_id=self.id, replay=replay)

    def _ipython_display_(self) -> None:
        from .widgets.storyboard_panel import show_storyboard

        show_storyboard(self)

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
            return self.generator._bus.publish(self.id, EventType.STORYBOARD_PROGRESS, step=step,
                                               status=status, progress=self.progress, message=message,
                                               data=payload)

    def _on_scene_progress(self, index: int, event: Event) -> None:
        """Re-publish a scene's denoising progress as overall storyboard progress (coalesced)."""
        if event.type != EventType.DETAILED_GENERATION_PROGRESS:
            return
        with self._lock:
            if self._current_scene != index:  # a late event of a scene already reported
                return
            scene_progress = float(event.data.get("progress", 0.0))
            self.scene_progress[index - 1] = max(self.scene_progress[index - 1], scene_progress)
            now = time.monotonic()
            if now - self._last_step_event < self.board.progress_interval:
                return
            self._last_step_event = now
            n = len(self.board.scenes)
            step, total = event.data.get("current_step", 0), event.data.get("total_steps", 0)
            overall = self._scene_start[index - 1] + self._scene_width[index - 1] * scene_progress / 100.0
            self._emit("videos", "in_progress", overall,
                       f"Scene {index}/{n}: {event.data.get('message') or event.data.get('stage')}",
                       scene_index=index, scene_task_id=event.task_id, scene_progress=round(scene_progress, 2),
                       current_step=step, total_steps=total)

    # -- the work ----------------------------------------------------------------------------
    def _start(self) -> None:
        board = self.board
        folder = board.folder
        try:
            (folder / "scenes").mkdir(parents=True, exist_ok=True)
            journal.write_task_file(folder, {
                "task_id": self.id, "kind": "storyboard", "model": self.generator.model,
                "prompt": board.story or " / ".join(s.prompt for s in board.scenes),
                "params": {"transition": board.transition, "crossfade": board.crossfade, "fps": board.fps,
                           "continuity": board.continuity, "seed": board.seed,
                           "scenes": board.plan()},
                "seed": board.seed, "parent_id": None,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            _continue_numbering(self.generator._bus, self.id, folder / journal.JOURNAL_NAME)
            self.generator._journal.open(self.id, folder)
        except OSError as exc:
            raise OSError(f"cannot write the storyboard folder {folder}: {exc}. Pass the Generator a "
                          "writable runs_dir= (or set WAN_NB_RUNS_DIR).") from exc
        # A cancel from a Jupyter server reaches the generator by task id; let it find this run.
        self.generator._cancellers[self.id] = self.cancel
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
            self._write_state()
            if self.generator._cancellers.get(self.id) == self.cancel:
                del self.generator._cancellers[self.id]
            self.generator._journal.close(self.id)
            self._done.set()

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
        reusable = self._reusable_scenes() if self.resume else [False] * n
        kept = sum(reusable)
        self._emit("video_params", "completed", _VIDEOS_START,
                   f"Prepared {n} video generation parameter set(s)" + (f"; {kept} scene(s) already on disk" if kept else ""),
                   scene_params=board.plan(), reused_scenes=[i + 1 for i, r in enumerate(reusable) if r])
        self._emit("videos", "in_progress", _VIDEOS_START,
                   f"Generating {n - kept} scene video(s) (may take several minutes)...")

        results: list[Result | None] = []
        previous_regenerated = False
        for index in range(1, n + 1):
            self._check_cancel(index)
            # With continuity a scene depends on the one before: once one is re-rendered, so is the rest.
            reuse = reusable[index - 1] and not (board.continuity and previous_regenerated)
            if reuse:
                results.append(None)
                self._scene_done(index, board.scene_path(index), None, reused=True)
                continue
            previous_regenerated = True
            result = self._render_scene(index)
            results.append(result)

        self._emit("videos", "completed", _VIDEOS_END, f"All {n} scene video(s) ready")
        self._check_cancel()
        how = (f"crossfade {board.crossfade:g} s" if board.transition == "crossfade" and n > 1 else "cuts")
        self._emit("stitch", "in_progress", _VIDEOS_END + 2, f"Stitching {n} scene(s) with {how}...")
        final = stitch(self.scene_videos, board.final_path, fps=board.fps, transition=board.transition,
                       crossfade=board.crossfade)
        from .video import frame_count

        total_frames = frame_count(final)
        self._emit("stitch", "completed", 98, f"Stitched the final video: {total_frames} frames, "
                   f"{total_frames / board.fps:.2f} s", final_video_path=str(final))
        result = StoryboardResult(
            storyboard_id=self.id, final_video_path=final, scene_videos=list(self.scene_videos),
            scene_results=results, frames=total_frames, fps=board.fps,
            duration_s=round(total_frames / board.fps, 4), run_dir=board.folder, video_url=video_url(self.id),
            scene_urls=[scene_url(self.id, i) for i in range(1, n + 1)])
        self._emit("complete", "completed", 100, "Storyboard complete!",
                   final_video_path=str(final), video_url=result.video_url, scene_urls=result.scene_urls,
                   frames=total_frames, duration_s=result.duration_s, fps=board.fps)
        return result

    def _reusable_scenes(self) -> list[bool]:
        """Which scene videos on disk were made with exactly the parameters asked for now."""
        from .video import frame_count

        board = self.board
        reusable = []
        for index, params in enumerate(board._params, 1):
            path, sidecar = board.scene_path(index), board.scene_path(index).with_suffix(".json")
            ok = False
            if path.is_file() and sidecar.is_file():
                try:
                    saved = json.loads(sidecar.read_text())
                    ok = (saved.get("params") == json.loads(dumps(public_params(params)))
                          and frame_count(path) == params["num_frames"])
                except (OSError, ValueError, RuntimeError):
                    ok = False  # unreadable: render it again
            reusable.append(ok)
        return reusable

    def _scene_kwargs(self, index: int) -> dict[str, Any]:
        board = self.board
        params = dict(board._params[index - 1])
        kwargs = {k: params[k] for k in GENERATION_ARGS if k in params}
        if board.continuity == "last_frame" and index > 1 and board.scenes[index - 1].image is None:
            from .video import read_frames

            kwargs["image"] = read_frames(self.scene_videos[index - 2])[-1]
        return kwargs

    def _render_scene(self, index: int) -> Result:
        board = self.board
        n = len(board.scenes)
        scene = board.scenes[index - 1]
        with self._lock:
            self.scene_status[index - 1] = "running"
            self._current_scene = index
        try:
            task = self.generator.submit(scene.prompt, parent_id=self.id, **self._scene_kwargs(index))
        except Exception as exc:
            self._fail_scene(index, None, exc)
        self.scene_task_ids[index - 1] = task.id
        self._current_task = task
        off = self.generator.subscribe(lambda event: self._on_scene_progress(index, event), task_id=task.id,
                                       types=[EventType.DETAILED_GENERATION_PROGRESS])
        self._emit("videos", "in_progress", self._scene_start[index - 1], f"Scene {index}/{n}: starting",
                   scene_index=index, scene_task_id=task.id, scene_prompt=scene.prompt)
        if self._cancel.is_set():  # cancel() ran between submit and _current_task being set
            task.cancel()
        try:
            result = task.result()
        except GenerationCancelled:
            with self._lock:
                self._current_scene = None
                self.scene_status[index - 1] = "cancelled"
            raise _Cancelled(index)
        except Exception as exc:
            self._fail_scene(index, task.id, exc)
        finally:
            off()
            self._current_task = None
        self._scene_done(index, result.video_path, result)
        return result

    def _fail_scene(self, index: int, task_id: str | None, exc: BaseException) -> None:
        n = len(self.board.scenes)
        with self._lock:
            self._current_scene = None
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
            _link_or_copy(source, target)
            params = board._params[index - 1]
            sidecar = {"index": index, "task_id": result.task_id if result else None,
                       "params": public_params(params), "source": str(source)}
            target.with_suffix(".json").write_text(dumps(sidecar))
        with self._lock:
            self._current_scene = None
            self.scene_status[index - 1] = "reused" if reused else "completed"
            self.scene_progress[index - 1] = 100.0
            self.scene_videos.append(target)
            overall = self._scene_start[index - 1] + self._scene_width[index - 1]
            self._emit("videos", "in_progress", overall,
                       f"Scene {index}/{n} " + ("already on disk" if reused else "done"),
                       scene_index=index, scene_video=str(target), scene_url=scene_url(self.id, index),
                       scene_task_id=result.task_id if result else None, scene_reused=reused)

    def _write_state(self) -> None:
        """storyboard.json: the plan and the outcome, for people and tools reading the folder."""
        board = self.board
        try:
            state = {"storyboard_id": self.id, "status": self.status, "story": board.story,
                     "transition": board.transition, "crossfade": board.crossfade, "fps": board.fps,
                     "continuity": board.continuity, "seed": board.seed,
                     "scenes": [{"index": i, "prompt": s.prompt, "params": p, "status": st, "task_id": t,
                                 "video": str(board.scene_path(i)) if st in ("completed", "reused") else None}
                                for i, (s, p, st, t) in enumerate(zip(board.scenes, board.plan(),
                                                                      self.scene_status, self.scene_task_ids), 1)],
                     "final_video_path": str(board.final_path) if self.status == "completed" else None}
            (board.folder / "storyboard.json").write_text(json.dumps(json.loads(dumps(state)), indent=1))
        except OSError:
            pass


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


def _in_scene(exc: Exception, where: str) -> Exception:
    """The same error (same class, same attributes) with the scene named in front."""
    if isinstance(exc, InvalidParameter):
        new: Exception = InvalidParameter(exc.name, exc.value, "")
    else:
        new = (TypeError if isinstance(exc, TypeError) else ValueError)()
    new.args = (f"{where}: {exc}",)
    return new


def _continue_numbering(bus: Any, task_id: str, journal_file: Path) -> None:
    """Resuming in a new process: go on from the journal's last seq, so ids stay unique."""
    if bus.last_seq(task_id) or not journal_file.is_file():
        return
    last = max((event.seq for event in journal.read_events(journal_file)), default=0)
    if not last:
        return
    bus.continue_seq(task_id, last)


def _link_or_copy(source: Path, target: Path) -> None:
    """Put the scene's video in the storyboard folder (a hard link when the disk allows)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        shutil.copy2(source, partial)
    partial.replace(target)


