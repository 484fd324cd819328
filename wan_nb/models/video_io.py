"""Latents to frames (the VAE decode) and frames to a browser-playable MP4."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wan_nb.runs.ffmetadata import ffmetadata_text, metadata_file  # noqa: F401 (re-exported)

__all__ = ["decode_latents", "write_mp4", "read_frames", "frame_count", "NonFiniteLatents",
           "FiniteWatch", "ffmetadata_text", "metadata_file", "probe_video", "VideoProbe", "NotAVideo"]


class NonFiniteLatents(FloatingPointError):
    """The denoiser produced NaN or infinite latents; decoding them would give a black video."""


_NON_FINITE_HINT = ("Lower guidance_scale or the LoRA weights; check the LoRA files; in float16 "
                    "try dtype='bf16' (or 'fp32').")


class FiniteWatch:
    """Remembers the first denoising step whose latents held a NaN or an infinity.

    ``observe`` runs after every step and stays on the device (no synchronisation, O(1) memory):
    the first bad step is kept in a one-element tensor. ``check`` reads it once, before the decode,
    and raises :class:`NonFiniteLatents` naming that step.
    """

    def __init__(self) -> None:
        self._first_bad: Any = None   # int64 tensor on the latents' device; 0 = all finite so far

    def observe(self, step: int, latents: Any) -> None:
        if latents is None:
            return
        import torch

        bad = ~torch.isfinite(latents).all()
        if self._first_bad is None or self._first_bad.device != latents.device:
            previous = 0 if self._first_bad is None else int(self._first_bad)
            # A fill on the device, not a copy from the host (which would synchronise a GPU stream).
            self._first_bad = torch.zeros((), dtype=torch.int64, device=latents.device).fill_(previous)
        self._first_bad = torch.where(bad & (self._first_bad == 0), step, self._first_bad)

    def check(self, latents: Any, total_steps: int, hint: str = "") -> None:
        import torch

        first = int(self._first_bad) if self._first_bad is not None else 0
        if not first and bool(torch.isfinite(latents).all()):
            return
        where = f"at step {first} of {total_steps}" if first else f"after the last step ({total_steps})"
        raise NonFiniteLatents(
            f"the latents became NaN or infinite {where}, so the video would be black; nothing was "
            f"decoded. {hint or _NON_FINITE_HINT}")


def execution_device(module: Any) -> Any:
    """The device ``module``'s inputs must be on, as diffusers finds it (offload hooks included)."""
    try:
        from diffusers.utils.torch_utils import get_module_execution_device
    except ImportError:  # diffusers before it had the helper
        return getattr(module, "device", None)
    return get_module_execution_device(module)


def decode_latents(pipe: Any, latents: Any) -> np.ndarray:
    """Decode Wan latents to uint8 frames (F, H, W, 3), as the diffusers Wan pipelines do."""
    import torch

    vae = pipe.vae
    # Where the VAE computes, not where its weights rest: with model offload they are back on the
    # CPU after the pipeline call (maybe_free_model_hooks) and the hook moves them to the GPU at
    # decode; with sequential offload they sit on "meta". diffusers' Wan pipelines use the same lookup.
    device = execution_device(vae) or latents.device
    if getattr(device, "type", None) == "meta":
        device = getattr(pipe, "_execution_device", None) or latents.device
    with torch.no_grad():
        latents = latents.to(device=device, dtype=vae.dtype)
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents.device, latents.dtype)
        video = vae.decode(latents / inv_std + mean, return_dict=False)[0]
        frames = pipe.video_processor.postprocess_video(video, output_type="np")[0]
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_mp4(frames: np.ndarray, path: Path, fps: float, metadata: dict[str, str] | None = None) -> Path:
    """Write H.264 / yuv420p with the index up front, so browsers start playing at once.

    ``metadata``: container tags (the run's recipe goes in ``comment``).

    Written to a temporary name and renamed, so a reader never sees half a video under the final
    name; any ffmpeg failure (a full disk, a missing folder) raises ``OSError`` with its reason.
    """
    import subprocess

    import imageio_ffmpeg

    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    count, height, width = frames.shape[:3]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part.mp4")
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{float(fps)}", "-i", "pipe:0"]
    with metadata_file(metadata or {}) as tags:
        if tags is not None:
            command += ["-f", "ffmetadata", "-i", str(tags), "-map", "0:v", "-map_metadata", "1"]
        command += ["-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", "-f", "mp4", str(partial)]
        proc = subprocess.run(command, input=frames.tobytes(), capture_output=True)
    if proc.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        partial.unlink(missing_ok=True)
        raise OSError(f"could not write {path}: {reason[0] if reason else 'ffmpeg failed'} "
                      f"(ffmpeg exit {proc.returncode}). Free disk space or pass a writable runs_dir=.")
    partial.replace(path)
    return path


def read_frames(path: Path, limit: int | None = None) -> np.ndarray:
    """The frames of a video as uint8 (F, H, W, 3): all of them, or the first ``limit``.

    With a limit ffmpeg stops there, and the frames go straight into one preallocated array:
    memory is what the frames returned hold, however long the file is.
    """
    import imageio_ffmpeg

    output = None if limit is None else ["-frames:v", str(int(limit))]
    reader = imageio_ffmpeg.read_frames(str(path), output_params=output)
    try:
        meta = next(reader)
        width, height = meta["size"]
        if limit is None:
            frames = [np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3) for buf in reader]
            return np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8)
        out = np.empty((int(limit), height, width, 3), np.uint8)
        count = 0
        for buf in reader:
            if count == limit:
                break
            out[count] = np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)
            count += 1
        return out[:count]
    finally:
        reader.close()


# ffmpeg's readers of text art (ANSI/ASCII files, BinText, XBin, iCE Draw, Artworx): they turn any
# text file into 640x400 "video" frames; none is a video a person would pass as one.
_TEXT_ART_FORMATS = {"tty", "bin", "xbin", "idf", "adf"}
_TEXT_ART_CODECS = {"ansi", "bintext", "xbin", "idf"}


@dataclass(frozen=True)
class VideoProbe:
    """What a video file holds, read from its header and packets (nothing decoded)."""

    frames: int
    width: int
    height: int
    fps: float | None
    codec: str
    container: str


class NotAVideo(ValueError):
    """The file holds no video stream ffmpeg can read (text, audio only, damaged)."""


def probe_video(path: Path) -> VideoProbe:
    """Frame count, size and codec of the first video stream, without decoding a frame.

    The count is that of the stream's packets (``-c copy`` to the null muxer): exact for the
    files people pass (one picture a packet) and fast however long the video is. Raises
    :class:`NotAVideo` for a file that is not one, text read as ANSI art included.
    """
    import re
    import subprocess

    import imageio_ffmpeg

    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    done = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:v:0", "-c", "copy",
                           "-f", "null", "-"], capture_output=True)
    text = done.stderr.decode(errors="replace")
    container = re.search(r"Input #0, (.+?), from ", text)
    stream = re.search(r"Stream #0:\d+\S*: Video: ([^\s,]+)[^\n]*?, (\d+)x(\d+)[\s,\[][^\n]*", text)
    if container is None or stream is None or done.returncode != 0:
        lines = [line for line in text.strip().splitlines() if "rror" in line or "atch" in line] or text.strip().splitlines()
        reason = "no video stream" if container is not None and stream is None else (lines[-1] if lines else "unreadable")
        raise NotAVideo(reason.split("] ", 1)[-1])
    formats = set(container.group(1).split(","))
    codec = stream.group(1)
    if formats & _TEXT_ART_FORMATS or codec in _TEXT_ART_CODECS:
        raise NotAVideo(f"ffmpeg reads it as text art ({container.group(1)}, codec {codec}), not as a video")
    counts = re.findall(r"frame=\s*(\d+)", text)
    rate = re.search(r"([\d.]+) fps", stream.group(0))
    return VideoProbe(frames=int(counts[-1]) if counts else 0, width=int(stream.group(2)), height=int(stream.group(3)),
                      fps=float(rate.group(1)) if rate else None, codec=codec, container=container.group(1))


def frame_count(path: Path) -> int:
    import imageio_ffmpeg

    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]
