"""Which diffusers Wan pipeline a generation runs, and the call: the inputs' sizes and frame counts,
then (on the worker) the pipeline that takes them. Which kind takes which input: :mod:`wan_nb.models.kinds`.

:func:`fill_from_video` and :func:`check_frames` run once the inputs are read (sizes and frame
counts, at submit); :func:`prepare_call` runs on the worker, just before the pipeline call.

``steps`` always counts the denoising steps that run. With ``strength`` (video-to-video) diffusers
runs the last ``int(n * strength)`` of an ``n``-step schedule, so the pipeline is called with the
smallest ``n`` for which that is ``steps``: the progress bar, the ETA and ``total_steps`` stay true.
"""

from __future__ import annotations

from typing import Any, Mapping

from wan_nb.protocol.errors import InvalidParameter
from wan_nb.models.user_inputs import VideoInput
from wan_nb.models.kinds import DEFAULT_STRENGTH, VIDEO_ARGS
from wan_nb.models.specs import pipeline_for_inputs, prepare_image, size_for_image

__all__ = ["fill_from_video", "check_frames", "schedule_steps", "prepare_call", "decoded_frames",
           "animate_segment_frames", "animate_segments", "denoising_passes", "total_steps",
           "ANIMATE_SEGMENT_FRAMES"]

# Wan Animate generates a long pose video clip by clip: each clip of this many frames starts from
# the last ANIMATE_CONDITIONING_FRAMES frames of the one before (the Wan authors' clip_len, and
# diffusers' segment_frame_length default). One clip of every frame would be a sequence the model
# never saw in training, with attention cost growing as its square.
ANIMATE_SEGMENT_FRAMES = 77
ANIMATE_CONDITIONING_FRAMES = 1


def _invalid(name: str, value: Any, message: str) -> Exception:
    shown = value if value is None or isinstance(value, (str, int, float)) else f"<{type(value).__name__}>"
    return InvalidParameter(name, shown, message)


def _driving_video(spec: Any, given: Mapping[str, Any]) -> Any:
    """The video whose length and shape the output follows, if any."""
    return given.get("pose_video") if spec.kind == "animate" else given.get("video")


def fill_from_video(spec: Any, p: dict[str, Any], given: Mapping[str, Any]) -> None:
    """Size and length from the driving video where the caller gave none: its aspect ratio at the
    model's default area (as an image-to-video input does) and all of its frames."""
    video = _driving_video(spec, p)
    if not isinstance(video, VideoInput):
        return
    if given.get("num_frames") is None:
        k = spec.temporal_factor
        count = len(video)
        if (count - 1) % k:
            usable = (count - 1) // k * k + 1
            name = "pose_video" if spec.kind == "animate" else "video"
            raise _invalid(name, video.describe(), f"has {count} frames; Wan makes {k}k+1 frames, so pass "
                           f"num_frames={usable} to use its first {usable} (nearest valid value)")
        p["num_frames"] = count
    height, width = given.get("height"), given.get("width")
    if (height is None or width is None) and p.get("image") is None:
        p["height"], p["width"] = size_for_image(video.first_frame(), spec, height=height, width=width)


def check_frames(spec: Any, p: dict[str, Any], max_steps: int) -> None:
    """Every video has at least ``num_frames`` frames; ``strength`` and the schedule are valid."""
    frames = p["num_frames"]
    for name in VIDEO_ARGS:
        video = p.get(name)
        if isinstance(video, VideoInput) and len(video) < frames:
            k = spec.temporal_factor
            usable = (len(video) - 1) // k * k + 1
            raise _invalid(name, video.describe(), f"has {len(video)} frames, fewer than num_frames={frames}; "
                           f"pass num_frames={usable} (the most it can give: {k}k+1) or a longer video")
    if spec.kind == "animate" and frames < 5:
        raise _invalid("num_frames", frames, "Wan Animate needs at least 5 frames (one conditions the next); "
                       "nearest valid value: 5")
    if spec.kind == "t2v" and p.get("video") is not None:
        strength = DEFAULT_STRENGTH if p.get("strength") is None else p["strength"]
        if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 < strength <= 1:
            nearest = min(max(float(strength), 0.05), 1.0) if isinstance(strength, (int, float)) else DEFAULT_STRENGTH
            raise _invalid("strength", strength, f"must be a number above 0 and at most 1 (how much of the "
                           f"video is repainted); nearest valid value: {nearest:g}")
        p["strength"] = float(strength)
        if schedule_steps(p["steps"], p["strength"]) > max_steps:
            raise _invalid("strength", strength, f"is so low that {p['steps']} steps need a schedule of more than "
                           f"{max_steps} steps; raise strength or lower steps")


def schedule_steps(steps: int, strength: float) -> int:
    """The smallest schedule ``n`` of which diffusers runs exactly ``steps`` steps at ``strength``
    (it runs ``min(int(n * strength), n)``; that grows by at most one per ``n``, so it hits ``steps``)."""
    n = max(int(steps / strength) - 1, steps)
    while min(int(n * strength), n) < steps:
        n += 1
    return n


# ---------------------------------------------------------------------------------------------
# The call (on the worker)
# ---------------------------------------------------------------------------------------------
def _twin(pipe: Any, attribute: str, class_name: str, keep: tuple[str, ...]) -> Any:
    """A pipeline of class ``class_name`` sharing ``pipe``'s modules (same weights, hooks, LoRAs)."""
    import diffusers

    cached = getattr(pipe, attribute, None)
    if cached is None:
        cached = getattr(diffusers, class_name)(**{k: v for k, v in pipe.components.items() if k in keep})
        cached.set_progress_bar_config(disable=True)
        setattr(pipe, attribute, cached)
    cached.scheduler = pipe.scheduler   # a flow_shift change replaces the scheduler object
    return cached


def prepare_call(pipe: Any, p: Mapping[str, Any], call: dict[str, Any]) -> tuple[Any, int]:
    """Put the inputs of ``p`` into the pipeline call ``call``; return (the pipeline to call,
    the number of reference frames to drop from its latents)."""
    height, width, frames = p["height"], p["width"], p["num_frames"]
    name = type(pipe).__name__
    if name == "WanAnimatePipeline":
        call.pop("num_frames")
        call.update(image=p["image"], pose_video=p["pose_video"].pictures(frames, height, width),
                    face_video=p["face_video"].pictures(frames), mode=p.get("mode") or "animate",
                    segment_frame_length=animate_segment_frames(frames),
                    prev_segment_conditioning_frames=ANIMATE_CONDITIONING_FRAMES, output_type="np")
        if call["mode"] == "replace":
            call["background_video"] = p["background_video"].pictures(frames, height, width)
            call["mask_video"] = _mask(p["mask"], frames, height, width)
        return pipe, 0
    if name == "WanVACEPipeline":
        references = p.get("reference_images") or None
        if p.get("video") is not None:
            call["video"] = p["video"].pictures(frames, height, width)
            if p.get("mask") is not None:
                call["mask"] = _mask(p["mask"], frames, height, width)
        if references:
            call["reference_images"] = list(references)
        return pipe, len(references or ())
    if isinstance(p.get("video"), VideoInput):   # video-to-video on a text-to-video model
        runner = _twin(pipe, "_wan_nb_v2v", "WanVideoToVideoPipeline",
                       ("tokenizer", "text_encoder", "vae", "scheduler", "transformer"))
        call.pop("num_frames")
        call.update(video=p["video"].pictures(frames, height, width), strength=p["strength"],
                    num_inference_steps=schedule_steps(p["steps"], p["strength"]))
        return runner, 0
    if p.get("image") is not None:
        call["image"] = p["image"]
    if p.get("last_image") is not None:
        call["last_image"] = prepare_image(p["last_image"], height, width)
    return pipeline_for_inputs(pipe, p.get("image")), 0


def animate_segment_frames(frames: int) -> int:
    """The clip length an Animate run of ``frames`` frames uses (a short run is one clip of its own length)."""
    return min(frames, ANIMATE_SEGMENT_FRAMES)


def animate_segments(frames: int) -> int:
    """How many clips WanAnimatePipeline denoises for ``frames`` frames: as it counts them, the
    frames after the first clip's conditioning frame, in steps of (clip - conditioning), rounded up."""
    step = animate_segment_frames(frames) - ANIMATE_CONDITIONING_FRAMES
    return max(1, -(-(frames - ANIMATE_CONDITIONING_FRAMES) // step))


def denoising_passes(p: Mapping[str, Any]) -> int:
    """How many times the pipeline runs its whole schedule: once, or once per Animate clip."""
    if p.get("pose_video") is None or not p.get("num_frames"):
        return 1
    return animate_segments(int(p["num_frames"]))


def total_steps(p: Mapping[str, Any]) -> int:
    """Every denoising step a run makes: ``steps`` per pass (segments x steps for Animate)."""
    return int(p["steps"]) * denoising_passes(p)


def _mask(mask: Any, frames: int, height: int, width: int) -> list:
    if isinstance(mask, VideoInput):
        return mask.pictures(frames, height, width)
    return [prepare_image(mask, height, width)] * frames   # one picture: the same mask on every frame


def decoded_frames(output: Any) -> Any:
    """uint8 frames (F, H, W, 3) when the pipeline decoded them itself (Animate), else None."""
    import numpy as np

    if not isinstance(output, np.ndarray):
        return None
    frames = output[0] if output.ndim == 5 else output
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
