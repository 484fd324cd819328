"""Latents to frames (the VAE decode) and frames to a browser-playable MP4."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["decode_latents", "write_mp4", "read_frames", "frame_count"]


def decode_latents(pipe: Any, latents: Any) -> np.ndarray:
    """Decode Wan latents to uint8 frames (F, H, W, 3), as the diffusers Wan pipelines do."""
    import torch

    vae = pipe.vae
    device = getattr(vae, "device", latents.device)
    if getattr(device, "type", None) == "meta":
        # Sequential offload keeps the weights on "meta" and brings each layer to the execution
        # device as it runs: the latents go there, not to where the parameters appear to be.
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
               "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{float(fps)}", "-i", "pipe:0",
               "-an", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
               "-movflags", "+faststart"]
    for key, value in (metadata or {}).items():
        command += ["-metadata", f"{key}={value}"]
    command += ["-f", "mp4", str(partial)]
    proc = subprocess.run(command, input=frames.tobytes(), capture_output=True)
    if proc.returncode != 0 or not partial.is_file() or partial.stat().st_size == 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        partial.unlink(missing_ok=True)
        raise OSError(f"could not write {path}: {reason[0] if reason else 'ffmpeg failed'} "
                      f"(ffmpeg exit {proc.returncode}). Free disk space or pass a writable runs_dir=.")
    partial.replace(path)
    return path


def read_frames(path: Path) -> np.ndarray:
    """All frames of a video as uint8 (F, H, W, 3)."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta["size"]
    frames = [np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3) for buf in reader]
    return np.stack(frames) if frames else np.zeros((0, height, width, 3), np.uint8)


def frame_count(path: Path) -> int:
    import imageio_ffmpeg

    return imageio_ffmpeg.count_frames_and_secs(str(path))[0]
