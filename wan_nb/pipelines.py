"""Which diffusers Wan pipeline a generation runs, which inputs each model takes, and the call.

One model kind per released architecture:

=========  ==================================  ==============================================
kind       pipeline                            inputs
=========  ==================================  ==============================================
t2v        WanPipeline                         video= + strength= (WanVideoToVideoPipeline on the
                                               same modules; one-transformer models only)
i2v        WanImageToVideoPipeline             image= (required), last_image=
flf2v      WanImageToVideoPipeline             image= and last_image= (both required)
ti2v       WanPipeline                         image= (WanImageToVideoPipeline on the same modules)
vace       WanVACEPipeline                     video= (control), mask=, reference_images=
animate    WanAnimatePipeline                  image= (the character), pose_video=, face_video=,
                                               mode= "animate" | "replace" (+ background_video=, mask=)
=========  ==================================  ==============================================

:func:`check_kind` runs in microseconds on the raw arguments (which inputs the model takes and
needs); :func:`fill_from_video` and :func:`check_frames` run once the inputs are read (sizes and
frame counts); :func:`prepare_call` runs on the worker, just before the pipeline call.

``steps`` always counts the denoising steps that run. With ``strength`` (video-to-video) diffusers
runs the last ``int(n * strength)`` of an ``n``-step schedule, so the pipeline is called with the
smallest ``n`` for which that is ``steps``: the progress bar, the ETA and ``total_steps`` stay true.
"""

from __future__ import annotations

from typing import Any, Mapping

from .inputs import VIDEO_ARGS

__all__ = ["INPUT_ARGS", "TAKES", "REQUIRES", "check_kind", "fill_from_video", "check_frames",
           "schedule_steps", "prepare_call", "decoded_frames", "kind_from_configs", "kind_from_name"]

# Generation arguments beyond the text-to-video ones (``image`` is older: params.GENERATION_ARGS).
INPUT_ARGS = ("video", "strength", "last_image", "reference_images", "mask", "pose_video", "face_video",
              "mode", "background_video")

TAKES: dict[str, frozenset[str]] = {
    "t2v": frozenset({"video", "strength"}),
    "i2v": frozenset({"image", "last_image"}),
    "flf2v": frozenset({"image", "last_image"}),
    "ti2v": frozenset({"image"}),
    "vace": frozenset({"video", "mask", "reference_images"}),
    "animate": frozenset({"image", "pose_video", "face_video", "mode", "background_video", "mask"}),
}
REQUIRES: dict[str, tuple[str, ...]] = {"i2v": ("image",), "flf2v": ("image", "last_image"),
                                        "animate": ("image", "pose_video", "face_video")}
IMAGE_KINDS = frozenset(k for k, takes in TAKES.items() if "image" in takes)
# Which model to name when an input goes to a model that cannot take it.
_SUGGEST = {"video": "a text-to-video model for video-to-video ('wan2.1-t2v-1.3b', 'tiny') or a VACE model "
                     "for a control video ('wan2.1-vace-1.3b', 'tiny-vace')",
            "strength": "video-to-video: a text-to-video model with video= ('wan2.1-t2v-1.3b', 'tiny')",
            "last_image": "a first-last-frame model ('wan2.1-flf2v-14b-720p', 'tiny-flf2v')",
            "reference_images": "a VACE model ('wan2.1-vace-1.3b', 'wan2.1-vace-14b', 'tiny-vace')",
            "mask": "a VACE model ('wan2.1-vace-1.3b', 'tiny-vace') or Animate with mode='replace'",
            "pose_video": "Wan Animate ('wan2.2-animate-14b', 'tiny-animate')",
            "face_video": "Wan Animate ('wan2.2-animate-14b', 'tiny-animate')",
            "background_video": "Wan Animate with mode='replace' ('wan2.2-animate-14b', 'tiny-animate')",
            "mode": "Wan Animate ('wan2.2-animate-14b', 'tiny-animate')"}
DEFAULT_STRENGTH = 0.8
MODES = ("animate", "replace")


def _invalid(name: str, value: Any, message: str) -> Exception:
    from .params import InvalidParameter

    shown = value if value is None or isinstance(value, (str, int, float)) else f"<{type(value).__name__}>"
    return InvalidParameter(name, shown, message)


def check_kind(spec: Any, given: Mapping[str, Any]) -> None:
    """Refuse an input the model cannot take, or a required one that is missing (no file is read)."""
    kind = spec.kind
    takes = TAKES.get(kind, frozenset())
    for name in INPUT_ARGS:
        value = given.get(name)
        if value is None or name in takes:
            continue
        if name == "video" and kind == "t2v":
            continue
        raise _invalid(name, value, f"model {spec.name!r} ({kind}) takes no {name}; use {_SUGGEST[name]}")
    if kind == "t2v" and given.get("video") is not None and len(spec.experts) > 1:
        raise _invalid("video", given["video"], f"model {spec.name!r} has two experts, and diffusers' "
                       "WanVideoToVideoPipeline runs one transformer; use a one-transformer text-to-video "
                       "model ('wan2.1-t2v-1.3b', 'wan2.1-t2v-14b') for video-to-video")
    if given.get("strength") is not None and given.get("video") is None:
        raise _invalid("strength", given["strength"], "is how much of video= is repainted: pass video= too "
                       "(or drop strength=)")
    if kind == "vace" and given.get("mask") is not None and given.get("video") is None:
        raise _invalid("mask", "<mask>", "a VACE mask says which parts of video= to repaint: pass video= too")
    mode = given.get("mode")
    if kind == "animate":
        if mode is not None and mode not in MODES:
            raise _invalid("mode", mode, "choose 'animate' (the character moves as the pose video) or "
                           "'replace' (the character replaces the person in background_video=, where mask= is white)")
        replace = (mode or spec.defaults.get("mode")) == "replace"
        for name in ("background_video", "mask"):
            if replace and given.get(name) is None:
                raise _invalid(name, None, f"mode='replace' needs {name}= (background_video: the scene; "
                               "mask: white where the character goes)")
            if not replace and given.get(name) is not None:
                raise _invalid(name, "<video>", "is used only with mode='replace'; pass mode='replace' or drop it")
    for name in REQUIRES.get(kind, ()):
        if given.get(name) is None and name != "image":   # image: params' own message
            raise _invalid(name, None, f"model {spec.name!r} ({kind}) needs {name}=: a file path, a PIL "
                           f"image or an array" + (" (or a list of pictures / an MP4)" if name in VIDEO_ARGS else ""))


def _driving_video(spec: Any, given: Mapping[str, Any]) -> Any:
    """The video whose length and shape the output follows, if any."""
    return given.get("pose_video") if spec.kind == "animate" else given.get("video")


def fill_from_video(spec: Any, p: dict[str, Any], given: Mapping[str, Any]) -> None:
    """Size and length from the driving video where the caller gave none: its aspect ratio at the
    model's default area (as an image-to-video input does) and all of its frames."""
    from .inputs import VideoInput
    from .models import size_for_image

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


def check_frames(spec: Any, p: dict[str, Any]) -> None:
    """Every video has at least ``num_frames`` frames; ``strength`` and the schedule are valid."""
    from .inputs import VideoInput

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
        from .params import MAX_STEPS

        if schedule_steps(p["steps"], p["strength"]) > MAX_STEPS:
            raise _invalid("strength", strength, f"is so low that {p['steps']} steps need a schedule of more than "
                           f"{MAX_STEPS} steps; raise strength or lower steps")


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
    from .inputs import VideoInput
    from .models import pipeline_for_inputs, prepare_image

    height, width, frames = p["height"], p["width"], p["num_frames"]
    name = type(pipe).__name__
    if name == "WanAnimatePipeline":
        call.pop("num_frames")
        call.update(image=p["image"], pose_video=p["pose_video"].pictures(frames, height, width),
                    face_video=p["face_video"].pictures(frames), mode=p.get("mode") or "animate",
                    segment_frame_length=frames, prev_segment_conditioning_frames=1, output_type="np")
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


def _mask(mask: Any, frames: int, height: int, width: int) -> list:
    from .inputs import VideoInput
    from .models import prepare_image

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


# ---------------------------------------------------------------------------------------------
# Kinds of folders and repos that are not presets
# ---------------------------------------------------------------------------------------------
def kind_from_configs(cls: str, index: Mapping[str, Any], transformer: Mapping[str, Any]) -> str:
    if "VACE" in cls:
        return "vace"
    if "Animate" in cls:
        return "animate"
    if "ImageToVideo" in cls:
        return "flf2v" if transformer.get("pos_embed_seq_len") else "i2v"
    return "ti2v" if index.get("expand_timesteps") else "t2v"


def kind_from_name(lowered: str) -> str:
    for word, kind in (("vace", "vace"), ("animate", "animate"), ("flf2v", "flf2v"), ("ti2v", "ti2v"),
                       ("i2v", "i2v")):
        if word in lowered:
            return kind
    return "t2v"

