"""RGB frames to one animated image a browser shows directly: WebP, or GIF where Pillow lacks WebP."""

from __future__ import annotations

import io
from typing import Any, Sequence

import numpy as np

__all__ = ["MAX_BYTES", "webp_supported", "frame_durations", "encode"]

MAX_BYTES = 200_000            # encoded preview (before base64) never exceeds this
_QUALITY = 70                  # WebP quality; a latent preview is blurry, so this is plenty


def webp_supported() -> bool:
    from PIL import features

    return bool(features.check("webp"))


def frame_durations(count: int, fps: float, temporal_factor: int = 4) -> list[int]:
    """Milliseconds per preview frame: a latent frame stands for ``temporal_factor`` video frames
    (the first for one), so the preview plays as long as the video."""
    fps = fps if fps and fps > 0 else 16.0
    return [max(20, round(1000.0 * (1 if i == 0 else temporal_factor) / fps)) for i in range(count)]


def encode(frames: np.ndarray, durations: Sequence[int] | int = 250, *,
           max_bytes: int = MAX_BYTES, fmt: str | None = None) -> tuple[bytes, str, tuple[int, int]]:
    """uint8 frames (F, H, W, 3) -> (animated image bytes, mime, (height, width)).

    Animated WebP where Pillow supports it, else GIF. If the result is over ``max_bytes`` it is
    re-encoded at lower quality, then smaller, until it fits.
    """
    from PIL import Image

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 (F, H, W, 3) with F >= 1, got {frames.dtype} {frames.shape}")
    fmt = (fmt or ("WEBP" if webp_supported() else "GIF")).upper()
    mime = {"WEBP": "image/webp", "GIF": "image/gif"}[fmt]
    quality = _QUALITY
    images = [Image.fromarray(f) for f in frames]
    while True:
        buffer = io.BytesIO()
        options: dict[str, Any] = {"save_all": True, "append_images": images[1:], "loop": 0,
                                   "duration": list(durations) if not isinstance(durations, int) else durations}
        if fmt == "WEBP":
            options.update(quality=quality, method=0, lossless=False)
        else:
            options.update(optimize=False, disposal=1)
        images[0].save(buffer, format=fmt, **options)
        data = buffer.getvalue()
        if len(data) <= max_bytes:
            return data, mime, (images[0].height, images[0].width)
        if fmt == "WEBP" and quality > 30:
            quality -= 20
            continue
        height, width = images[0].height, images[0].width
        if max(height, width) <= 16:
            raise ValueError(f"cannot encode {len(images)} frames within max_bytes={max_bytes}")
        new = (max(1, int(width * 0.75)), max(1, int(height * 0.75)))
        images = [im.resize(new, Image.BILINEAR) for im in images]
