"""The frame steps after the decode (interpolate, then upscale), inside the ``post_processing`` stage.

Each step reports through the run's ``detailed_generation_progress`` events, with
``post_step`` (``"interpolate"`` | ``"upscale"``), ``post_done`` / ``post_total`` (frame pairs for
interpolation, frames for upscaling) and an ETA from the step's own pace. The stage's progress
band is shared: the decode takes the first :data:`DECODE_SHARE`, the steps the rest, equally.
A cancel is honoured between pairs / frames.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import options

__all__ = ["DECODE_SHARE", "decode_share", "run_post", "process_frames", "PostResult", "fetch_post_files",
           "default_device"]

DECODE_SHARE = 0.4
_REPORT_EVERY_S = 0.2   # progress events at most five a second (an 81-frame clip has 80 pairs)


def fetch_post_files(run: Any, pipe: Any) -> None:
    """The weight files the run's post-processing needs, downloaded (with the loading stages' progress)
    right after the model loads, so a missing file fails the run before its denoising, not after."""
    p = run.task.params
    if p.get("decode") == "taehv":
        from wan_nb.previews.taehv_files import resolve_file

        channels = int(getattr(getattr(getattr(pipe, "vae", None), "config", None), "z_dim", 16) or 16)
        resolve_file(run.ctx.taehv_source, channels, run.load_report())
    for name, what in (("interpolator", "RIFE interpolator"), ("upscaler", "upscaler")):
        source = p.get(name)
        if source and source != "lanczos" and not Path(source).is_file():
            from wan_nb.models.download import fetch_file

            owner, repo, filename = source.split("/", 2)
            fetch_file(f"{owner}/{repo}", filename, run.load_report(), what=what)


def decode_share(params: dict[str, Any]) -> float:
    """The part of the post_processing band that the decode fills."""
    return DECODE_SHARE if options.post_steps(params) else 1.0


class PostResult:
    """The processed frames, the original ones (None when nothing was done) and the frame rate."""

    def __init__(self, frames: np.ndarray, original: np.ndarray | None, fps: float) -> None:
        self.frames, self.original, self.fps = frames, original, fps


def run_post(run: Any, frames: np.ndarray) -> PostResult:
    """Interpolate and upscale ``frames`` as ``run.task.params`` asks (``run``: a TaskRun)."""
    return process_frames(frames, run.task.params, progress=run.progress, check_cancel=run.check_cancel,
                          device=_device(run), load_report=run.load_report)


def process_frames(frames: np.ndarray, p: dict[str, Any], *, progress: Callable[..., None],
                   check_cancel: Callable[[], None] = lambda: None, device: Any = "cpu",
                   load_report: Callable[[], Any] = lambda: None, start: float = DECODE_SHARE,
                   end: float = 1.0) -> PostResult:
    """Interpolate and upscale ``frames`` as ``p`` asks; ``progress(message, fraction=, remaining=,
    post_step=, post_done=, post_total=)`` with fractions from ``start`` to ``end`` (a run's
    post_processing band, or a storyboard's stitch step)."""
    steps = options.post_steps(p)
    if not steps:
        return PostResult(frames, None, float(p["fps"]))
    original = frames
    share = (end - start) / len(steps)
    for number, step in enumerate(steps):
        reporter = _Reporter(progress, check_cancel, step, start + share * number, share)
        if step == "interpolate":
            frames = _interpolate(frames, p, reporter, device, load_report)
        else:
            frames = _upscale(frames, p, reporter, device, load_report)
    return PostResult(frames, original, options.output_fps(p))


class _Reporter:
    """``report(done, total)`` -> a progress event (rate-limited, the last one always sent)."""

    def __init__(self, progress: Callable[..., None], check_cancel: Callable[[], None], step: str, start: float,
                 share: float) -> None:
        self.progress, self.check_cancel, self.step, self.start, self.share = progress, check_cancel, step, start, share
        self.began = time.perf_counter()
        self.sent_at = 0.0

    def __call__(self, done: int, total: int) -> None:
        self.check_cancel()
        now = time.perf_counter()
        if done < total and now - self.sent_at < _REPORT_EVERY_S:
            return
        self.sent_at = now
        elapsed = now - self.began
        remaining = elapsed / done * (total - done) if done else None
        unit = "frame pairs" if self.step == "interpolate" else "frames"
        verb = "Interpolating" if self.step == "interpolate" else "Upscaling"
        self.progress(f"{verb}: {done}/{total} {unit}", fraction=self.start + self.share * done / max(1, total),
                      remaining=remaining, post_step=self.step, post_done=done, post_total=total)


def _interpolate(frames: np.ndarray, p: dict[str, Any], report: _Reporter, device: Any,
                 load_report: Callable[[], Any]) -> np.ndarray:
    from .interpolation import interpolate_ffmpeg

    factor = options.interpolation_factor(p)
    report(0, max(0, len(frames) - 1))
    if p.get("interpolator"):  # RIFE 4.6 on the pipeline's device, pair by pair
        from .interpolation import interpolate_pairs
        from .rife import load_rife

        path = p["interpolator"]
        if not Path(path).is_file():
            from wan_nb.models.download import fetch_file

            owner, repo, filename = path.split("/", 2)
            path = fetch_file(f"{owner}/{repo}", filename, load_report(), what="RIFE interpolator")
        model = load_rife(path, device=device)
        return interpolate_pairs(frames, int(factor), model.middle, report=report)
    return interpolate_ffmpeg(frames, float(p["fps"]), float(p["fps"]) * factor, report=report)


def default_device() -> Any:
    """Where post-processing runs outside a run (a storyboard's film): the GPU when there is one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _device(run: Any) -> Any:
    return run.holder.execution_device(run.holder.pipe) if run.holder.pipe is not None else "cpu"


def _upscale(frames: np.ndarray, p: dict[str, Any], report: _Reporter, device: Any,
             load_report: Callable[[], Any]) -> np.ndarray:
    from .upscaling import load_upscaler, upscale_lanczos, upscale_with_model

    size = options.output_size(p)
    report(0, len(frames))
    if p.get("upscaler") in (None, "lanczos"):
        return upscale_lanczos(frames, size, report=report)
    model = load_upscaler(p["upscaler"], load_report())
    return upscale_with_model(frames, model, size, device=device, report=report)
