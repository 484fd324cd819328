"""More frames between the frames: x2 / x4 (the clip's length kept, its frame rate multiplied), or
ffmpeg's motion-compensated interpolation to any rate.

Both report as they go: ``report(done, total)`` counts frame *pairs* of the input (80 for an
81-frame clip), so a progress bar and an ETA follow the work. The ends stay put: ``n`` frames
times ``k`` give ``(n - 1) * k + 1`` frames, every original frame at its place.

``interpolate_pairs`` takes any pair function ``middle(a, b, t) -> frame`` (a network such as
RIFE); ``interpolate_ffmpeg`` pipes the frames through ffmpeg's ``minterpolate`` filter (no weights).
"""

from __future__ import annotations

import subprocess
import threading
from typing import Callable

import numpy as np

__all__ = ["interpolate_pairs", "interpolate_ffmpeg", "expected_frames", "Report"]

Report = Callable[[int, int], None]


def expected_frames(count: int, factor: float) -> int:
    return int(round((count - 1) * factor)) + 1 if count > 1 else count


def interpolate_pairs(frames: np.ndarray, factor: int, middle: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
                      report: Report | None = None) -> np.ndarray:
    """``frames`` (F, H, W, 3) uint8 -> ((F - 1) * factor + 1, H, W, 3): ``middle(a, b, t)`` makes
    the frame at time ``t`` (0 < t < 1) between ``a`` and ``b``."""
    count = len(frames)
    if factor == 1 or count < 2:
        return frames
    out = np.empty((expected_frames(count, factor), *frames.shape[1:]), dtype=np.uint8)
    pairs = count - 1
    for index in range(pairs):
        a, b = frames[index], frames[index + 1]
        out[index * factor] = a
        for sub in range(1, factor):
            out[index * factor + sub] = middle(a, b, sub / factor)
        if report is not None:
            report(index + 1, pairs)
    out[-1] = frames[-1]
    return out


def interpolate_ffmpeg(frames: np.ndarray, fps: float, fps_out: float, report: Report | None = None,
                       ffmpeg: str | None = None) -> np.ndarray:
    """ffmpeg's ``minterpolate`` (motion-compensated, bidirectional estimation) from ``fps`` to ``fps_out``.

    The output keeps the clip's length: ``(F - 1) * fps_out / fps + 1`` frames (ffmpeg's own
    count is trimmed, or padded with the last frame, to that).
    """
    count, height, width = frames.shape[:3]
    factor = fps_out / fps
    wanted = expected_frames(count, factor)
    if count < 2:
        return frames
    if ffmpeg is None:
        import imageio_ffmpeg

        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    command = [ffmpeg, "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
               "-r", f"{fps:g}", "-i", "pipe:0",
               "-vf", f"minterpolate=fps={fps_out:g}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1",
               "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    failure: list[BaseException] = []

    def feed() -> None:  # on its own thread: ffmpeg's output must be drained while it reads
        try:
            proc.stdin.write(np.ascontiguousarray(frames, dtype=np.uint8).tobytes())
        except (BrokenPipeError, OSError) as exc:
            failure.append(exc)
        finally:
            try:
                proc.stdin.close()
            except OSError:
                pass

    writer = threading.Thread(target=feed, name="wan_nb-minterpolate-feed", daemon=True)
    writer.start()
    size = height * width * 3
    out: list[np.ndarray] = []
    pairs = count - 1
    while len(out) < wanted:
        chunk = proc.stdout.read(size)
        if len(chunk) < size:
            break
        out.append(np.frombuffer(chunk, dtype=np.uint8).reshape(height, width, 3))
        if report is not None:
            report(min(pairs, int((len(out) - 1) / factor)), pairs)
    proc.stdout.close()  # what ffmpeg makes past the clip's end is not wanted
    writer.join()
    code = proc.wait()
    error = proc.stderr.read().decode(errors="replace").strip()
    proc.stderr.close()
    if not out:
        raise OSError(f"ffmpeg minterpolate failed (exit {code}): {error or failure or 'no frames'}")
    while len(out) < wanted:
        out.append(out[-1])
    video = np.stack(out[:wanted])
    if float(factor).is_integer():  # the originals exactly where they were (ffmpeg re-filters them)
        video[::int(factor)] = frames
    if report is not None:
        report(pairs, pairs)
    return video

