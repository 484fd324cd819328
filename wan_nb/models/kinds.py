"""Which inputs each kind of Wan model takes and needs, and how a folder or repo name says its kind.

Pure data and microsecond checks on the raw arguments (no file is read, nothing is imported but
the exceptions): ``models`` reads kinds from here, ``params`` refuses an input the model cannot
take before any work. Which pipeline runs and how it is called is :mod:`wan_nb.models.pipelines`.

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
"""

from __future__ import annotations

from typing import Any, Mapping

from wan_nb.protocol.errors import InvalidParameter

__all__ = ["INPUT_ARGS", "IMAGE_ARGS", "LIST_ARGS", "VIDEO_ARGS", "MEDIA_ARGS", "TAKES", "REQUIRES",
           "check_kind", "kind_from_configs", "kind_from_name"]

# The media arguments: pictures, lists of pictures, videos (a mask may also be one picture).
IMAGE_ARGS = ("image", "last_image")
LIST_ARGS = ("reference_images",)
VIDEO_ARGS = ("video", "mask", "pose_video", "face_video", "background_video")
MEDIA_ARGS = IMAGE_ARGS + LIST_ARGS + VIDEO_ARGS

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
