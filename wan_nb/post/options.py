"""The post-processing arguments of a run, checked before any model work.

``decode``       ``"vae"`` (default) or ``"taehv"`` (a draft: the tiny decoder, seconds instead of minutes)
``interpolate``  ``1`` (off), ``2`` or ``4`` (frames between each pair: 81 frames x2 -> 161), or
                 ``"ffmpeg"`` (ffmpeg's motion-compensated interpolation, no weights; x2 or to ``fps_out``)
``fps_out``      the frame rate wanted; alone it means ``interpolate`` by fps_out / fps (2 or 4), else ffmpeg
``interpolator`` for x2 / x4: a RIFE 4.6 checkpoint (path or ``owner/repo/file``); None: ffmpeg's
                 motion interpolation at that factor (checked by :mod:`.checkpoints`, which reads the file)
``upscale``      ``1`` (off) to ``4``: output height and width times this
``upscaler``     ``"lanczos"`` (default, no weights), or a super-resolution file (``.pth`` / ``.safetensors``:
                 Real-ESRGAN by our own code, other architectures through spandrel) given as a path or
                 ``owner/repo/file`` on the Hub (a local file's network is checked by :mod:`.checkpoints`)
``previews``     this run's previews: ``"auto"``, ``"taehv"``, ``"latent2rgb"``, ``False`` (default: the generator's)

Every refusal is an :class:`~wan_nb.protocol.errors.InvalidParameter` naming the value to pass
instead. No torch here.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path
from typing import Any, Mapping

from wan_nb.protocol.errors import InvalidParameter
from wan_nb.runs.recipe import POST_DEFAULTS, is_post_default  # noqa: F401 (re-exported)
from wan_nb.runs.recipe import post_recipe_fields as recipe_fields  # noqa: F401 (re-exported)

__all__ = ["POST_ARGS", "POST_DEFAULTS", "MAX_OUTPUT_SIDE", "check_post", "recipe_fields", "post_steps",
           "interpolation_factor", "output_fps", "output_size", "is_post_default", "PREVIEW_MODES", "FILM_ARGS", "interpolated_frames",
           "check_film_post"]

POST_ARGS = tuple(POST_DEFAULTS)  # the defaults and what a recipe records: wan_nb.runs.recipe
INTERPOLATE_FACTORS = (1, 2, 4)
MAX_UPSCALE = 4
# The largest output side an upscale may make: 4K UHD's width. Beyond it H.264 levels run out
# (browsers refuse to play the MP4) and a 121-frame clip's frames pass 10 GB in memory.
MAX_OUTPUT_SIDE = 3840
MAX_OUTPUT_FRAMES = 4097
PREVIEW_MODES = ("auto", "taehv", "latent2rgb")
_WEIGHT_SUFFIXES = (".pth", ".pt", ".safetensors", ".ckpt")
# What a storyboard does once to its stitched film rather than to each scene: interpolating each
# scene would also make the stitch's frame-exact joins and crossfades count frames at a rate the
# scenes no longer have. decode and previews stay per scene.
FILM_ARGS = ("interpolate", "fps_out", "interpolator", "upscale", "upscaler")


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def check_post(p: dict[str, Any], kwargs: Mapping[str, Any]) -> None:
    """Fill ``p``'s post-processing arguments (defaults where not given) and check them."""
    for name, default in POST_DEFAULTS.items():
        if p.get(name) is None:
            p[name] = default
    decode = p["decode"]
    if decode not in ("vae", "taehv"):
        raise InvalidParameter("decode", decode, "give 'vae' (the full-quality decode, default) or 'taehv' "
                               "(a fast draft through the tiny TAEHV decoder)")
    _check_previews(p["previews"])
    _check_interpolation(p)
    _check_upscale(p)


def check_film_post(args: Mapping[str, Any], fps: float, frames: int, height: int, width: int) -> dict[str, Any]:
    """A storyboard's :data:`FILM_ARGS`, checked as one run's would be against the stitched film
    (``frames`` at ``fps``, ``height`` x ``width``); the filled-in parameters."""
    p = {name: args.get(name) for name in FILM_ARGS}
    p.update(fps=fps, num_frames=frames, height=height, width=width)
    check_post(p, args)
    return p


def _check_previews(mode: Any) -> None:
    if mode is None or mode is False or mode in PREVIEW_MODES:
        return
    raise InvalidParameter("previews", mode, "a run's previews are 'auto', 'taehv', 'latent2rgb' or False "
                           "(a TAEHV file is chosen once: Generator(previews='path/to/taew2_1.safetensors'))")


def _check_interpolation(p: dict[str, Any]) -> None:
    factor, fps_out, fps = p["interpolate"], p["fps_out"], p.get("fps") or 16
    if factor != "ffmpeg" and (not _number(factor) or factor not in INTERPOLATE_FACTORS):
        wanted = fps * factor if _number(factor) and factor > 1 else 2 * fps
        raise InvalidParameter("interpolate", factor, "give 1 (off), 2 or 4 (the frame rate doubled or "
                               "quadrupled, the clip's length kept), or 'ffmpeg' for any other rate; e.g. "
                               f"interpolate=2, or interpolate='ffmpeg', fps_out={wanted:g}")
    if factor != "ffmpeg":
        p["interpolate"] = int(factor)
    if fps_out is not None:
        if not _number(fps_out) or not fps < fps_out <= 240:
            raise InvalidParameter("fps_out", fps_out, f"must be a frame rate above the run's fps ({fps:g}) "
                                   f"and at most 240, e.g. fps_out={2 * fps:g}")
        if p["interpolate"] == 1:  # fps_out alone: the network for a x2 / x4, ffmpeg for any other rate
            ratio = fps_out / fps
            p["interpolate"] = int(round(ratio)) if any(abs(ratio - f) < 1e-6 for f in (2, 4)) else "ffmpeg"
        elif p["interpolate"] != "ffmpeg" and abs(fps_out - fps * p["interpolate"]) > 1e-6:
            raise InvalidParameter("fps_out", fps_out, f"interpolate={p['interpolate']} makes {fps * p['interpolate']:g} "
                                   f"fps; drop fps_out, or pass interpolate='ffmpeg' for {fps_out:g} fps")
        p["fps_out"] = float(fps_out)
    interpolator = p["interpolator"]
    if interpolator is not None:
        if not isinstance(interpolator, (str, os.PathLike)):
            raise InvalidParameter("interpolator", interpolator, "give the path of a RIFE 4.6 checkpoint, "
                                   "'owner/repo/file' on the Hub, or None (ffmpeg's motion interpolation)")
        if p["interpolate"] not in (2, 4):
            raise InvalidParameter("interpolator", str(interpolator), "is for interpolate=2 or 4; pass one "
                                   "of them, or drop interpolator")
        local = Path(str(interpolator)).expanduser()
        if _is_local(str(interpolator)):
            if not local.is_file():
                raise InvalidParameter("interpolator", str(interpolator), f"no such file ({local.absolute()}); "
                                       "give a RIFE 4.6 checkpoint, or interpolator=None (ffmpeg's motion "
                                       "interpolation, no weights)")
            p["interpolator"] = str(local.absolute())
    frames = interpolated_frames(p)
    if frames > MAX_OUTPUT_FRAMES:
        raise InvalidParameter("interpolate", p["interpolate"], f"would make {frames} frames, more than "
                               f"{MAX_OUTPUT_FRAMES}; interpolate a shorter clip or use a lower factor")


def _check_upscale(p: dict[str, Any]) -> None:
    scale, upscaler = p["upscale"], p["upscaler"]
    if not _number(scale) or not 1 <= scale <= MAX_UPSCALE:
        raise InvalidParameter("upscale", scale, f"give a factor from 1 (off) to {MAX_UPSCALE}, e.g. upscale=2")
    p["upscale"] = int(scale) if float(scale).is_integer() else float(scale)
    height, width = output_size(p)
    # Only an upscale is refused here: the size asked for itself is the generation's own limit
    # (wan_nb.core.params), checked before this with sizes that fit.
    if p["upscale"] != 1 and max(height, width) > MAX_OUTPUT_SIDE:
        fits = math.floor(MAX_OUTPUT_SIDE / max(p["height"], p["width"]) * 100) / 100
        raise InvalidParameter("upscale", scale, f"would make {width}x{height}, above the {MAX_OUTPUT_SIDE}-pixel "
                               f"output limit; use upscale={fits:g} or less, or a smaller height/width")
    if upscaler is None:
        p["upscaler"] = "lanczos" if p["upscale"] != 1 else None
        return
    if not isinstance(upscaler, (str, os.PathLike)):
        raise InvalidParameter("upscaler", upscaler, "give 'lanczos', a file path, or 'owner/repo/file' on the Hub")
    text = str(upscaler)
    if text == "lanczos":
        return
    if p["upscale"] == 1:
        raise InvalidParameter("upscaler", text, "is set but upscale=1; pass upscale=2 (or the model's factor)")
    local = Path(text).expanduser()
    if _is_local(text):
        if not local.is_file():
            raise InvalidParameter("upscaler", text, f"no such file ({local.absolute()}); give the path of a "
                                   "super-resolution checkpoint (.pth/.safetensors), 'owner/repo/file' on the "
                                   "Hub, or upscaler='lanczos' (no weights)")
        if local.suffix not in _WEIGHT_SUFFIXES:
            raise InvalidParameter("upscaler", text, f"is a {local.suffix or 'suffix-less'} file; give a "
                                   ".pth or .safetensors super-resolution checkpoint, or upscaler='lanczos'")
        p["upscaler"] = str(local.absolute())


def _is_local(text: str) -> bool:
    """A file on this machine (as opposed to ``owner/repo/file`` on the Hub)."""
    return text.startswith(("/", "~", ".")) or text.count("/") < 2 or Path(text).expanduser().exists()


def interpolation_factor(p: Mapping[str, Any]) -> float:
    """How many times the frame rate grows (ffmpeg: fps_out / fps, x2 by default)."""
    factor = p.get("interpolate") or 1
    if factor == "ffmpeg":
        return (p.get("fps_out") or 2 * p["fps"]) / p["fps"]
    return float(factor)


def interpolated_frames(p: Mapping[str, Any]) -> int:
    """Frames after interpolation: (n - 1) x factor + 1 (the ends stay where they were)."""
    n = int(p["num_frames"])
    return int(round((n - 1) * interpolation_factor(p))) + 1 if n > 1 else n


def output_fps(p: Mapping[str, Any]) -> float:
    return float(p["fps"]) * interpolation_factor(p)


def output_size(p: Mapping[str, Any]) -> tuple[int, int]:
    """(height, width) after upscaling, even (H.264 4:2:0 needs even sides)."""
    scale = p.get("upscale") or 1
    return (2 * round(p["height"] * scale / 2), 2 * round(p["width"] * scale / 2))


def post_steps(p: Mapping[str, Any]) -> list[str]:
    """The frame steps this run does after the decode, in order."""
    steps = []
    if (p.get("interpolate") or 1) != 1:
        steps.append("interpolate")
    if (p.get("upscale") or 1) != 1:
        steps.append("upscale")
    return steps
