"""Storyboards: several scenes generated one after another and stitched into one video.

The usage example is in the package's docstring (``wan_nb.storyboard``).

This module is the plan: the scenes, their parameters (all checked when the storyboard is made,
before any model work) and the folder they go to. Rendering is ``wan_nb.storyboard.run``; the
run folder's layout is ``wan_nb.storyboard.folder``.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from wan_nb.protocol import frontend
from ..generator import Generator  # only to make the default generator of from_story
from wan_nb.models.kinds import REQUIRES, TAKES
from wan_nb.core.surface import GeneratorSurface
from wan_nb.core.params import GENERATION_ARGS, InvalidParameter, build_params, public_params
from wan_nb.storyboard.stitch import check_transition, stitched_frame_count
from wan_nb.post import options as post_options
from . import folder as layout
from .run import StoryboardResult, StoryboardRun

__all__ = ["Scene", "Storyboard", "split_story"]

# What a Scene may set for itself beyond prompt/frames/seed/loras/image. fps is the
# storyboard's (one video has one frame rate).
_SCENE_OPTIONS = tuple(a for a in GENERATION_ARGS
                       if a not in ("num_frames", "seed", "loras", "image", "fps"))


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
        film = sorted(set(options) & set(post_options.FILM_ARGS))
        if film:
            raise TypeError(f"Scene: {', '.join(film)} is set on the Storyboard, not on a scene: the stitched "
                            f"film is interpolated / upscaled once, e.g. Storyboard(gen, scenes, {film[0]}=...)")
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


def _stand_in_frame(previous: dict[str, Any]) -> Any:
    import numpy as np

    return np.zeros((previous["height"], previous["width"], 3), np.uint8)


def _check_image_source(index: int, image: Any) -> None:
    if image is None:
        return
    from wan_nb.models import specs as models

    try:  # cheap: a path must exist, an array must have a picture's shape (no decoding here)
        models.check_image(image)
    except ValueError as exc:
        raise ValueError(f"scene {index}: {exc}") from None


class Storyboard:
    """Scenes to generate with one generator, and how to join them.

    Parameters
    ----------
    gen : the :class:`~wan_nb.Generator` that renders every scene.
    scenes : :class:`Scene` objects or plain prompt strings, in order.
    transition : ``"cut"`` or ``"crossfade"``; ``crossfade`` is its length in seconds (snapped
        to whole frames). A crossfade of ``d`` s makes the final video ``(n - 1) * d`` s shorter.
    fps : frame rate of every scene and of the final video (default: the model's).
    continuity : ``None``, ``"last_frame"`` or ``"flf2v"``. ``"last_frame"``: start each scene from the
        previous scene's last frame (needs an image-to-video model, e.g. ``"tiny-i2v"``,
        ``"wan2.2-ti2v-5b"``). ``"flf2v"``: a first-last-frame transition at every join, for models
        that take ``last_image`` (``"wan2.1-flf2v-14b-720p"``, ``"tiny-flf2v"``, the Wan I2V models):
        each scene is generated between two key frames, its start (its own ``image=``, else the
        previous scene's last frame as made) and its end (its own ``last_image=``, else the next
        scene's ``image=``), so scene n ends on the picture scene n+1 starts from.
    seed : scene ``i`` (0-based) without its own seed uses ``seed + i``; default: random, fixed
        when the storyboard is made, so :meth:`resume` renders the same scenes.
    id : the storyboard id (and run folder name); default: a new one.
    progress_interval : at most one re-published denoising-step progress event per this many
        seconds (scene boundaries are always published).
    **defaults : generation arguments shared by every scene (``height``, ``width``, ``steps``,
        ``guidance_scale``, ``negative_prompt``, ``num_frames``, ...); a Scene's own win.
    """

    def __init__(self, gen: GeneratorSurface, scenes: Iterable[Scene | str], *, transition: str = "cut",
                 crossfade: float = 0.5, fps: float | None = None, continuity: str | None = None,
                 seed: int | None = None, id: str | None = None, progress_interval: float = 0.2,
                 story: str | None = None, **defaults: Any) -> None:
        if not isinstance(gen, GeneratorSurface):
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
        if continuity not in (None, "last_frame", "flf2v"):
            raise ValueError(f"continuity={continuity!r}: choose None, 'last_frame' or 'flf2v'")
        if continuity == "flf2v" and "last_image" not in TAKES.get(gen.spec.kind, ()):
            raise ValueError(f"continuity='flf2v' needs a first-last-frame model (one that takes last_image=); "
                             f"the generator runs {gen.model!r} ({gen.spec.kind}). Use e.g. "
                             "Generator(model='tiny-flf2v') or 'wan2.1-flf2v-14b-720p'.")
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
        film = {k: defaults.pop(k) for k in post_options.FILM_ARGS if k in defaults}
        self.defaults = dict(defaults)
        self.progress_interval = float(progress_interval)
        self.story = story
        self.id = id or gen.new_task_id()
        self._run: StoryboardRun | None = None
        # Everything is checked now, before any model work: a typo costs nothing.
        self._params: list[dict[str, Any]] = []
        for index, scene in enumerate(scenes, 1):
            self._params.append(self._scene_params(index, scene))
        sizes = {(p["height"], p["width"]) for p in self._params}
        if len(sizes) > 1:
            raise ValueError(f"every scene must have the same height and width to be stitched; got "
                             f"{sorted(sizes)}. Set height= and width= on the Storyboard instead.")
        check_transition(transition, crossfade, fps, self.scene_frames)
        # interpolate= / upscale= apply to the stitched film, once: checked now against its frames and size
        height, width = next(iter(sizes))
        stitched = stitched_frame_count(self.scene_frames, fps, transition, crossfade)
        self.post = post_options.check_film_post(film, fps, stitched, height, width)
        from wan_nb.post.checkpoints import check_post_files  # reads a named RIFE / upscaler file (torch)

        check_post_files(self.post)

    # -- building ----------------------------------------------------------------------------
    @classmethod
    def from_story(cls, text: str, writer: Callable[[str], Sequence[str]] | None = None,
                   style: str | None = None, *, gen: GeneratorSurface | None = None, **kwargs: Any) -> "Storyboard":
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
        if isinstance(text, GeneratorSurface):
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
        if self._params and "height" not in kwargs and "width" not in kwargs:
            # One video has one size: later scenes take the first scene's (which an image may set).
            kwargs["height"], kwargs["width"] = self._params[0]["height"], self._params[0]["width"]
        _check_image_source(index, scene.image)
        following = self.scenes[index] if index < len(self.scenes) else None
        if self.continuity == "flf2v" and kwargs.get("last_image") is None and following is not None:
            kwargs["last_image"] = following.image  # end on the key frame the next scene starts from
        if self.continuity == "flf2v" and kwargs.get("last_image") is None and "last_image" in \
                REQUIRES.get(self.gen.spec.kind, ()):
            raise ValueError(f"scene {index}: {self.gen.model!r} makes each scene between two key frames; give "
                             f"scene {index} last_image=" + (f" or scene {index + 1} image=" if following else ""))
        from_previous = scene.image is None and bool(self.continuity) and index > 1
        if getattr(self.gen.spec, "requires_image", self.gen.spec.kind == "i2v") and \
                scene.image is None and not from_previous:
            raise ValueError(f"scene {index}: {self.gen.model!r} is an image-to-video model; give the first "
                             "scene an image, e.g. Scene(prompt, image='start.png')")
        # A scene that starts from the previous one's last frame has its image only once that
        # scene is made; checked now with a stand-in of that frame's size.
        kwargs["image"] = _stand_in_frame(self._params[-1]) if from_previous else scene.image
        try:
            params = build_params(self.gen.spec, scene.prompt, kwargs, known_loras=self.gen.loras)
        except (ValueError, TypeError) as exc:
            raise _in_scene(exc, f"scene {index} ({scene.prompt[:40]!r})") from exc
        if from_previous:
            params["image"] = None
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
        """Frames of the final video (after the film's interpolation, if any)."""
        return post_options.interpolated_frames(self.post)

    @property
    def output_fps(self) -> float:
        """The final video's frame rate: ``fps``, times the film's interpolation."""
        return post_options.output_fps(self.post)

    @property
    def duration_s(self) -> float:
        return self.frames / self.output_fps

    def scene_path(self, index: int) -> Path:
        """Where scene ``index`` (1-based) is kept: ``scenes/scene_01.mp4``, ..."""
        return layout.scene_path(self.folder, index)

    @property
    def final_path(self) -> Path:
        return layout.final_path(self.folder)

    # -- running -----------------------------------------------------------------------------
    def submit(self, *, resume: bool = False) -> "StoryboardRun":
        """Start rendering on a thread of its own; returns a :class:`StoryboardRun` at once.

        ``resume=True`` reuses scene videos already in the run folder that were made with the
        same parameters, and renders only the rest.
        """
        if self._run is not None and not self._run.done():
            raise RuntimeError(f"storyboard {self.id} is already running; wait for it or cancel() it")
        self._run = StoryboardRun(self, resume=resume)
        self._run.start()
        return self._run

    def run(self, *, progress: str | bool = "auto") -> StoryboardResult:
        """Render every scene and the final video; block until done (Ctrl-C cancels)."""
        return self._wait(self.submit(), progress)

    def resume(self, *, progress: str | bool = "auto") -> StoryboardResult:
        """Like :meth:`run`, but keep the scenes already on disk and render only what is missing; a
        scene stopped or interrupted mid-way with a checkpoint continues from it (with the same
        arguments), not from its first step."""
        return self._wait(self.submit(resume=True), progress)

    def _wait(self, handle: "StoryboardRun", progress: str | bool) -> StoryboardResult:
        frontend.show("live", handle, mode=progress)
        try:
            return handle.result()
        except KeyboardInterrupt:
            handle.cancel(keep=True)  # Ctrl-C keeps the scene's steps done: resume() continues it
            handle.wait(timeout=30)
            raise

    def cancel(self, keep: bool = False) -> bool:
        """Cancel the running storyboard, if any; ``keep=True`` keeps the checkpoint of the scene it
        stops, so :meth:`resume` continues that scene where it stopped."""
        return self._run.cancel(keep=keep) if self._run is not None else False

    @property
    def current(self) -> "StoryboardRun | None":
        """The latest run (running or finished)."""
        return self._run

    @property
    def scene_params(self) -> list[dict[str, Any]]:
        """The resolved parameter set of every scene, as its task gets it (the image included)."""
        return self._params

    def plan(self) -> list[dict[str, Any]]:
        """The parameter set of every scene (what each scene task will be given)."""
        return [public_params(p) for p in self._params]

    def _ipython_display_(self) -> None:
        frontend.show("storyboard", self)

    def __repr__(self) -> str:
        return (f"Storyboard(id={self.id!r}, scenes={len(self.scenes)}, transition={self.transition!r}, "
                f"frames={self.frames}, fps={self.fps:g})")



def _in_scene(exc: Exception, where: str) -> Exception:
    """The same error (same class, same attributes) with the scene named in front."""
    if isinstance(exc, InvalidParameter):
        new: Exception = InvalidParameter(exc.name, exc.value, "")
    else:
        new = (TypeError if isinstance(exc, TypeError) else ValueError)()
    new.args = (f"{where}: {exc}",)
    return new


