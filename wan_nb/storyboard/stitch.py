"""Join scene videos into one with moviepy: hard cuts or crossfades, frame-exact.

Durations are counted in frames, not seconds: each scene clip is given exactly
``frames / fps`` seconds (the container's rounded duration would drop or repeat a frame at
every join), and a crossfade is snapped to whole frames. So the stitched video has exactly
``sum(frames) - (n - 1) * crossfade_frames`` frames, i.e. a crossfade of ``d`` seconds
shortens the total by ``(n - 1) * d``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from wan_nb.models.video_io import frame_count

__all__ = ["TRANSITIONS", "crossfade_frames", "stitched_frame_count", "stitch"]

TRANSITIONS = ("cut", "crossfade")


def crossfade_frames(seconds: float, fps: float) -> int:
    """A crossfade of ``seconds`` at ``fps``, in whole frames (at least one)."""
    return max(1, int(round(seconds * fps)))


def stitched_frame_count(frames: Sequence[int], fps: float, transition: str = "cut",
                         crossfade: float = 0.0) -> int:
    """How many frames :func:`stitch` writes for scenes of ``frames`` frames each."""
    total = sum(frames)
    if transition == "crossfade" and len(frames) > 1:
        total -= (len(frames) - 1) * crossfade_frames(crossfade, fps)
    return total


def check_transition(transition: str, crossfade: float, fps: float, frames: Sequence[int]) -> None:
    """Raise a clear ``ValueError`` for a transition that cannot join these scenes."""
    if transition not in TRANSITIONS:
        raise ValueError(f"transition={transition!r}: choose 'cut' or 'crossfade'")
    if transition != "crossfade" or len(frames) < 2:
        return
    if not isinstance(crossfade, (int, float)) or isinstance(crossfade, bool) or not crossfade > 0:
        raise ValueError(f"crossfade={crossfade!r}: give the crossfade length in seconds (> 0), e.g. 0.5")
    overlap = crossfade_frames(crossfade, fps)
    shortest = min(frames)
    if overlap >= shortest:
        raise ValueError(
            f"crossfade={crossfade!r} s is {overlap} frames at {fps:g} fps, but the shortest scene has only "
            f"{shortest} frames; use crossfade <= {(shortest - 1) / fps:.3g} s or longer scenes")


def stitch(videos: Sequence[Path], out: Path, *, fps: float, transition: str = "cut",
           crossfade: float = 0.5) -> Path:
    """Write the scenes in ``videos`` one after another to ``out`` (H.264, browser-playable)."""
    from moviepy import VideoFileClip, concatenate_videoclips, vfx

    if not videos:
        raise ValueError("stitch needs at least one scene video")
    frames = [frame_count(Path(p)) for p in videos]
    check_transition(transition, crossfade, fps, frames)
    clips = [VideoFileClip(str(p), audio=False).with_duration(n / fps) for p, n in zip(videos, frames)]
    try:
        if transition == "crossfade" and len(clips) > 1:
            overlap = crossfade_frames(crossfade, fps) / fps
            faded = [clips[0]] + [clip.with_effects([vfx.CrossFadeIn(overlap)]) for clip in clips[1:]]
            final = concatenate_videoclips(faded, method="compose", padding=-overlap)
        else:
            final = concatenate_videoclips(clips, method="chain")
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".part.mp4")
        final.write_videofile(
            str(partial), fps=fps, codec="libx264", audio=False, preset="veryfast",
            pixel_format="yuv420p", ffmpeg_params=["-crf", "18", "-movflags", "+faststart"],
            logger=None)
        partial.replace(out)  # a reader never sees a half-written final video
        return out
    finally:
        for clip in clips:
            clip.close()
