"""Checking generation arguments before any model work.

Every error names the argument, the value given and the nearest valid value, so the fix is one
edit away. Runs in microseconds: no torch, no model.
"""

from __future__ import annotations

import math
import numbers
import random
from typing import Any, Mapping

from wan_nb.models import kinds
from wan_nb.models import pipelines
from wan_nb.fast.cache import check_cache  # cache acceleration: a mode the model can't take is refused in build_params
from wan_nb.protocol.errors import InvalidParameter  # defined with every other exception; params' name for it stays
from wan_nb.models.user_inputs import MEDIA_ARGS, VideoInput, describe, read
from wan_nb.models.specs import ModelSpec
from wan_nb.models.presets import flow_shift_for
from wan_nb.core import lora_schedule
from wan_nb.post.options import POST_ARGS, check_post  # decode=, interpolate=, fps_out=, upscale=, upscaler=, previews=
from wan_nb.models.guidance import check_guidance  # guidance=, guidance_options=: diffusers' guiders
from wan_nb.models.few_step import SUFFIX as FEW_STEP_SUFFIX

__all__ = ["InvalidParameter", "build_params", "GENERATION_ARGS"]

GENERATION_ARGS = ("negative_prompt", "height", "width", "num_frames", "steps", "guidance_scale",
                   "guidance_scale_2", "seed", "image", "fps", "loras", "flow_shift", "cache",
                   "cache_threshold") + kinds.INPUT_ARGS + POST_ARGS + ("guidance", "guidance_options")

# Upper bounds. Each is far beyond what the Wan models were trained for (40-50 steps, 81-121
# frames, 1280x720, 16-24 fps, guidance 3-6) and each keeps one argument from costing unbounded
# memory or time before the first cancel check: the scheduler's arrays grow with steps, the
# latents with frames x height x width. Steps stop at 100,000, not near the trained 50, because
# long runs are how soak tests and cancel checks are written; at about 600 bytes a step of
# scheduler state that is 60 MB, where 10**9 steps was 23 GB and an OOM kill.
MAX_STEPS = 100_000
MAX_FRAMES = 1025
MAX_SIDE = 4096
FPS_RANGE = (1.0, 120.0)
MAX_GUIDANCE = 100.0
MAX_FLOW_SHIFT = 100.0
# The output's pixels x frames, whatever the model: what the latents, the decode and the finished
# video grow with (the decoded video alone is 12 bytes a pixel-frame as float32, 4 GB here). 1080p
# at 161 frames is past any size the Wan models were trained for (720p, 81-121 frames);
# 4096x4096x1025 (17 G pixel-frames) passed every other check and died after 20 s allocating 4.3 GB.
MAX_PIXEL_FRAMES = 1920 * 1080 * 161
# Where the planner knows the model: the largest card it prices (H200, 141 GB). A size whose
# leanest plan (sequential offload, the smallest quant, VAE tiling) needs more fits no GPU.
# The text encoder reads 512 tokens (a few thousand characters); anything longer is cut there, so a
# generous character cap only refuses mistakes (a pasted file) that would be stored several times.
MAX_PROMPT_CHARS = 10_000


def _nearest_multiple(value: float, factor: int) -> int:
    return max(factor, int(round(value / factor)) * factor)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A finite real number (not a bool: ``True`` as a height is a bug, not a 1)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def build_params(spec: ModelSpec, prompt: Any, kwargs: Mapping[str, Any],
                 known_loras: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Merge ``kwargs`` over the model's defaults and validate. Returns the full parameter set."""
    unknown = sorted(set(kwargs) - set(GENERATION_ARGS))
    if unknown:
        raise TypeError(f"unknown generation argument(s) {', '.join(unknown)}; "
                        f"valid ones are: {', '.join(GENERATION_ARGS)}")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidParameter("prompt", prompt, "give a non-empty text prompt, e.g. "
                               "'a red fox running through snow'")
    _check_length("prompt", prompt)
    kinds.check_kind(spec, kwargs)  # inputs this model cannot take, or needs: before any file is read

    defaults = spec.defaults
    p: dict[str, Any] = {"prompt": prompt.strip()}
    for key in GENERATION_ARGS:
        value = kwargs.get(key)
        p[key] = defaults.get(key) if value is None else value
    p["negative_prompt"] = p["negative_prompt"] or ""
    if not isinstance(p["negative_prompt"], str):
        raise InvalidParameter("negative_prompt", p["negative_prompt"], "must be a string (or None)")
    _check_length("negative_prompt", p["negative_prompt"])
    if p["image"] is not None and spec.accepts_image:
        _fill_size_from_image(spec, p, kwargs)
    _read_inputs(spec, p, kwargs)

    factor = spec.spatial_factor
    for side in ("height", "width"):
        value = p[side]
        if not _is_int(value) or value < factor:
            nearest = _nearest_multiple(value, factor) if _is_number(value) else defaults.get(side)
            raise InvalidParameter(side, value, f"must be a whole number of pixels, at least {factor}; "
                                   f"try {side}={nearest}")
        if value % factor:
            raise InvalidParameter(side, value, f"must be a multiple of {factor} for this model; "
                                   f"nearest valid value: {_nearest_multiple(value, factor)}")
        if value > MAX_SIDE:
            raise InvalidParameter(side, value, f"must be at most {MAX_SIDE} pixels (the model was trained "
                                   f"at {defaults.get(side)}); try {side}={defaults.get(side)}")
    p["height"], p["width"] = int(p["height"]), int(p["width"])

    frames, k = p["num_frames"], spec.temporal_factor
    if not _is_int(frames) or frames < 1 or (frames - 1) % k:
        nearest = max(1, int(round((frames - 1) / k)) * k + 1) if _is_number(frames) else 1 + 4 * k
        raise InvalidParameter("num_frames", frames, f"must be of the form {k}k+1 (1, {k + 1}, {2 * k + 1}, "
                               f"{3 * k + 1}, ...); nearest valid value: {nearest}")
    if frames > MAX_FRAMES:
        raise InvalidParameter("num_frames", frames, f"must be at most {MAX_FRAMES} (the model was trained "
                               f"on {defaults.get('num_frames')}); make longer videos from scenes "
                               "(wan_nb.Storyboard)")
    p["num_frames"] = int(frames)
    _check_output_size(spec, p)

    steps = p["steps"]
    if not _is_int(steps) or steps < 1:
        nearest = max(1, int(round(steps))) if _is_number(steps) else 1
        raise InvalidParameter("steps", steps, f"must be a whole number >= 1; nearest valid value: {nearest}")
    if steps > MAX_STEPS:
        raise InvalidParameter("steps", steps, f"must be at most {MAX_STEPS}; this model's default is "
                               f"{defaults.get('steps')}")
    p["steps"] = int(steps)

    for name in ("guidance_scale", "guidance_scale_2"):
        value = p[name]
        if value is None and name == "guidance_scale_2":
            continue
        if not _is_number(value):
            raise InvalidParameter(name, value, "must be a number >= 0, e.g. 5.0 (1.0 turns "
                                   "classifier-free guidance off)")
        if value < 0:
            raise InvalidParameter(name, value, "must be >= 0; nearest valid value: 0.0")
        if value > MAX_GUIDANCE:
            raise InvalidParameter(name, value, f"must be at most {MAX_GUIDANCE:g} (Wan uses 3 to 6; a "
                                   "huge scale overflows the latents to a black video)")
        p[name] = float(value)
    if kwargs.get("guidance_scale_2") is not None and len(spec.experts) < 2:
        raise InvalidParameter("guidance_scale_2", kwargs["guidance_scale_2"], f"model {spec.name!r} has "
                               "one transformer; guidance_scale_2 is for the low-noise expert of two-expert "
                               "models (Wan 2.2 A14B). Drop it, or set guidance_scale")

    fps = p["fps"]
    low, high = FPS_RANGE
    if not _is_number(fps) or not low <= fps <= high:
        raise InvalidParameter("fps", fps, f"must be a number from {low:g} to {high:g}; the model's "
                               f"default is {defaults.get('fps')}")

    shift = kwargs.get("flow_shift")
    if shift is None:
        p["flow_shift"] = flow_shift_for(defaults.get("flow_shift"), p["height"], p["width"])
    elif not _is_number(shift) or not 0 < shift <= MAX_FLOW_SHIFT:
        raise InvalidParameter("flow_shift", shift, f"must be a number above 0 and at most "
                               f"{MAX_FLOW_SHIFT:g}; Wan uses 3.0 at 480p, 5.0 at 720p (12.0 for "
                               "Wan 2.2 A14B text-to-video)")
    else:
        p["flow_shift"] = float(shift)

    seed = p["seed"]
    if seed is None:
        seed = random.SystemRandom().randrange(0, 2**32)
    elif not _is_int(seed):
        nearest = int(seed) if _is_number(seed) else 0
        raise InvalidParameter("seed", seed, f"must be an integer (or None for a random one); try seed={nearest}")
    elif not 0 <= seed < 2**63:
        raise InvalidParameter("seed", seed, f"must be between 0 and 2**63-1; try seed={abs(int(seed)) % 2**32}")
    p["seed"] = int(seed)

    if p["image"] is not None and not spec.accepts_image:
        raise InvalidParameter("image", "<image>", f"model {spec.name!r} is text-to-video and takes no "
                               "image; use an image-to-video model (e.g. 'wan2.1-i2v-14b-480p', "
                               "'wan2.2-ti2v-5b', or 'tiny-i2v' for tests)")
    if p["image"] is None and spec.requires_image:
        raise InvalidParameter("image", None, f"model {spec.name!r} is image-to-video: pass image= (a "
                               "file path, a PIL image or an array) for the first frame")

    loras = p["loras"]
    if loras is None:
        loras = {}
    if not isinstance(loras, Mapping):
        raise InvalidParameter("loras", loras, "must be a dict of adapter name -> weight, "
                               "e.g. loras={'style': 0.8}")
    for name, weight in loras.items():
        if known_loras is not None and name not in known_loras:
            raise InvalidParameter("loras", dict(loras), f"no LoRA named {name!r} is loaded; call "
                                   f"gen.load_lora(path, name={name!r}) first (loaded: "
                                   f"{sorted(known_loras) or 'none'})")
    p["loras"] = check_lora_weights(loras, known_loras, p["steps"], len(spec.experts))
    pipelines.check_frames(spec, p, MAX_STEPS)
    _use_frames(p)
    p["guidance"], p["guidance_options"] = check_guidance(p["guidance"], p["guidance_options"], p["guidance_scale"],
                                                          few_step=spec.name.endswith(FEW_STEP_SUFFIX))
    p["cache"], p["cache_threshold"] = check_cache(p["cache"], p["cache_threshold"], two_experts=len(spec.experts) >= 2,
                                                   pipeline_class=spec.pipeline_class, inputs=p)
    check_post(p, kwargs)  # wan_nb.post: after fps, size and frames are known (the output size limit needs them)
    from wan_nb.post.checkpoints import check_post_files  # reads a named RIFE file (torch): only when one is named

    check_post_files(p)
    return p


def check_lora_weights(loras: Mapping[str, Any], known: Mapping[str, Any] | None, steps: int,
                       experts: int) -> dict[str, Any]:
    """A run's LoRA weights in their JSON form (:mod:`wan_nb.core.lora_schedule`): numbers, pairs, lists,
    ramps, callables (evaluated here). With none given, the loaded adapters' own weights, when one of them
    is a schedule: a list's length and a pair's model are checked now, and the recipe holds them."""
    if not loras and known:
        defaults = {n: getattr(entry, "weight", entry) for n, entry in known.items()}
        if all(lora_schedule.is_constant(w) for w in defaults.values()):
            return {}
        loras = defaults
    out = {}
    for name, weight in loras.items():
        try:
            out[str(name)] = lora_schedule.check(weight, name=str(name), steps=steps, experts=experts)
        except lora_schedule.ScheduleError as exc:
            raise InvalidParameter("loras", {name: weight}, str(exc)) from None
    return out


def _read_inputs(spec: ModelSpec, p: dict[str, Any], kwargs: Mapping[str, Any]) -> None:
    """Every video, mask and extra picture read once (wan_nb.models.user_inputs); size and length follow the
    driving video where the caller gave none."""
    fps = p["fps"] if _is_number(p["fps"]) else 16.0
    for name in MEDIA_ARGS:
        if name != "image" and p.get(name) is not None:
            p[name] = read(name, p[name], fps)
    # The video whose length a run takes when num_frames is not given (pipelines.fill_from_video's
    # rule): one longer than a run can make is refused here, naming a num_frames that works.
    driving = "pose_video" if spec.kind == "animate" else "video"
    video = p.get(driving)
    if kwargs.get("num_frames") is None and isinstance(video, VideoInput) and len(video) > MAX_FRAMES:
        usable = min(MAX_FRAMES, int(defaults_frames(spec)))
        raise InvalidParameter(driving, video.describe(), f"has {len(video):,} frames, more than the {MAX_FRAMES} a "
                               f"run can make; pass num_frames={usable} to use its first {usable} (any {spec.temporal_factor}k+1 "
                               f"up to {MAX_FRAMES}), or make a long video from scenes (wan_nb.Storyboard)")
    pipelines.fill_from_video(spec, p, kwargs)


def defaults_frames(spec: ModelSpec) -> int:
    frames = spec.defaults.get("num_frames")
    return frames if _is_int(frames) and frames >= 1 else 81


def _use_frames(p: dict[str, Any]) -> None:
    """Every video from now on stands for the frames the run takes: its first num_frames, the
    only ones decoded and hashed (refused here if even those would not fit in memory)."""
    for name in MEDIA_ARGS:
        if isinstance(p.get(name), VideoInput):
            p[name] = p[name].using(p["num_frames"])


def _check_output_size(spec: ModelSpec, p: dict[str, Any]) -> None:
    """Refuse, before any work, an output too large to make: over :data:`MAX_PIXEL_FRAMES`. The
    error names the limit and the nearest sizes that fit: fewer frames at this size, or this many
    frames at a smaller size of the same aspect."""
    height, width, frames = p["height"], p["width"], p["num_frames"]
    volume = height * width * frames
    if volume > MAX_PIXEL_FRAMES:
        fits = lambda h, w, f: h * w * f <= MAX_PIXEL_FRAMES  # noqa: E731
        limit = (f"{volume / 1e6:,.0f} M pixel-frames; at most {MAX_PIXEL_FRAMES / 1e6:,.0f} M are accepted (e.g. "
                 "1920x1080 at 161 frames)")
    else:
        # Within the cap, whether it fits a card is the planner's answer (wan-nb plan): it traces
        # the model at that size, seconds to minutes the first time, too slow for validation.
        return
    k, factor = spec.temporal_factor, spec.spatial_factor
    fewer = next((f for f in range((frames - 1) // k * k + 1, 0, -k) if fits(height, width, f)), None)
    smaller = None
    for h in range((height - 1) // factor * factor, factor - 1, -factor):   # same aspect, one step smaller each time
        w = max(factor, int(h * width / height) // factor * factor)
        if fits(h, w, frames):
            smaller = (h, w)
            break
    options = [f"num_frames={fewer}" for _ in [0] if fewer]
    options += [f"height={smaller[0]}, width={smaller[1]}" for _ in [0] if smaller]
    raise InvalidParameter("height x width x num_frames", f"{height}x{width}x{frames}",
                           f"is too large to make: {limit}. Nearest that fits: {' or '.join(options) or 'a smaller size'}")


def _check_length(name: str, text: str) -> None:
    if len(text) > MAX_PROMPT_CHARS:
        raise InvalidParameter(name, text[:40] + "...", f"is {len(text):,} characters long; at most "
                               f"{MAX_PROMPT_CHARS:,} are accepted (the text encoder reads only the first "
                               "512 tokens, a few thousand characters)")


def _fill_size_from_image(spec: ModelSpec, p: dict[str, Any], kwargs: Mapping[str, Any]) -> None:
    """An image with no height/width given: the video takes the image's aspect ratio at the model's
    default pixel area (a portrait image gives a portrait video), rounded to valid multiples; with
    one side given, the other follows the image's aspect."""
    from wan_nb.models.specs import check_image, size_for_image

    height, width = kwargs.get("height"), kwargs.get("width")
    if height is not None and width is not None:
        return
    check_image(p["image"])
    if all(_is_int(v) for v in (height, width) if v is not None):
        p["height"], p["width"] = size_for_image(p["image"], spec, height=height, width=width)


def public_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-safe view of a parameter set (an image is described, not embedded)."""
    out = dict(params)
    for name in MEDIA_ARGS:  # a picture or a video is described, not embedded
        if out.get(name) is not None:
            out[name] = describe(out[name])
    return out
