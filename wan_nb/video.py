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
    with torch.no_grad():
        latents = latents.to(device=device, dtype=vae.dtype)
        shape = (1, vae.config.z_dim, 1, 1, 1)
        mean = torch.tensor(vae.config.latents_mean).view(shape).to(latents.device, latents.dtype)
        inv_std = 1.0 / torch.tensor(vae.config.latents_std).view(shape).to(latents.device, latents.dtype)
        video = vae.decode(latents / inv_std + mean, return_dict=False)[0]
        frames = pipe.video_processor.postprocess_video(video, output_type="np")[0]
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_mp4(frames: np.ndarray, path: Path, fps: float) -> Path:
    """Write H.264 / yuv420p with the index up front, so browsers start playing at once."""
    import imageio_ffmpeg

    frames = np.ascontiguousarray(frames)
    count, height, width = frames.shape[:3]
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part.mp4")
    writer = imageio_ffmpeg.write_frames(
        str(partial), (width, height), fps=float(fps), codec="libx264", pix_fmt_out="yuv420p",
        macro_block_size=1, quality=None, bitrate=None,
        output_params=["-crf", "18", "-preset", "veryfast", "-movflags", "+faststart"],
        ffmpeg_log_level="error")
    try:
        writer.send(None)
        for frame in frames:
            writer.send(frame)
    finally:
        writer.close()
    partial.replace(path)  # a reader never sees a half-written video under the final name
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
