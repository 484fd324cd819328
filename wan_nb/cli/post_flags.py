"""Previews and post-processing on the command line: ``--previews``, ``--decode``, ``--interpolate``,
``--fps-out``, ``--interpolator``, ``--upscale``, ``--upscaler`` (what each does: wan_nb.post.options, wan_nb.previews.choice)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_post_flags", "post_run_options", "previews_option"]


def _interpolate(text: str) -> Any:
    return text if text == "ffmpeg" else int(text) if text.isdigit() else text


def add_post_flags(gen: argparse.ArgumentParser) -> None:
    gen.add_argument("--previews", help="live previews (in --json events): auto, taehv, latent2rgb, off, or a "
                     "TAEHV file (default: off on the command line)")
    gen.add_argument("--decode", choices=["vae", "taehv"], help="taehv: a fast draft decode with the tiny decoder")
    gen.add_argument("--interpolate", type=_interpolate, metavar="2|4|ffmpeg",
                     help="more frames: x2 or x4 at the same length, or ffmpeg's motion interpolation")
    gen.add_argument("--fps-out", type=float, dest="fps_out", help="the output frame rate (interpolates to it)")
    gen.add_argument("--interpolator", help="x2 / x4 with RIFE 4.6: its checkpoint (a file or owner/repo/file)")
    gen.add_argument("--upscale", type=float, help="output size factor (1-4)")
    gen.add_argument("--upscaler", help="lanczos (default, no weights) or a super-resolution file / Hub file")


def post_run_options(args: argparse.Namespace) -> dict[str, Any]:
    out = {k: getattr(args, k) for k in ("decode", "interpolate", "fps_out", "interpolator", "upscale", "upscaler")
           if getattr(args, k, None) is not None}
    if isinstance(out.get("upscale"), float) and out["upscale"].is_integer():
        out["upscale"] = int(out["upscale"])
    return out


def previews_option(args: argparse.Namespace) -> Any:
    """Generator(previews=...): off unless --previews names a mode or a file."""
    value = getattr(args, "previews", None)
    return False if value in (None, "off", "false", "False") else value
