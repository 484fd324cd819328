"""Latents to RGB frames for a preview: a linear projection (3 x C factors and a bias), no VAE.

Wan 2.1-style 16-channel latents and Wan 2.2 TI2V 48-channel latents use the published factors
(the ones ComfyUI ships); other channel counts get a projection fitted by least squares against
the model's own VAE, cached per model in the wan_nb cache folder. Imports torch only when used.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MAX_SIZE", "Projection", "WAN21", "WAN22", "projection_for", "fit_projection", "preview_size",
           "project"]

log = logging.getLogger(__name__)

MAX_SIZE = 256                 # longest side of a preview, px


@dataclass(frozen=True)
class Projection:
    """``rgb = latent_channels @ factors + bias`` in the pipeline's normalised latent space.

    ``factors`` has one row per latent channel and three columns (R, G, B); the output is
    roughly in [-1, 1] like a VAE's output.
    """

    name: str
    factors: tuple[tuple[float, float, float], ...]
    bias: tuple[float, float, float]

    @property
    def channels(self) -> int:
        return len(self.factors)


# Published latent -> RGB factors for Wan 2.1 (and Wan 2.2 A14B, which uses the same VAE) and for
# the Wan 2.2 TI2V 5B VAE (48 channels), as shipped in ComfyUI's comfy/latent_formats.py. They
# apply to latents normalised with the VAE's latents_mean/latents_std, which is the space the
# diffusers Wan pipelines denoise in.
WAN21 = Projection("wan2.1", (
    (-0.1299, -0.1692, 0.2932), (0.0671, 0.0406, 0.0442), (0.3568, 0.2548, 0.1747),
    (0.0372, 0.2344, 0.1420), (0.0313, 0.0189, -0.0328), (0.0296, -0.0956, -0.0665),
    (-0.3477, -0.4059, -0.2925), (0.0166, 0.1902, 0.1975), (-0.0412, 0.0267, -0.1364),
    (-0.1293, 0.0740, 0.1636), (0.0680, 0.3019, 0.1128), (0.0032, 0.0581, 0.0639),
    (-0.1251, 0.0927, 0.1699), (0.0060, -0.0633, 0.0005), (0.3477, 0.2275, 0.2950),
    (0.1984, 0.0913, 0.1861),
), (-0.1835, -0.0868, -0.3360))

WAN22 = Projection("wan2.2", (
    (0.0119, 0.0103, 0.0046), (-0.1062, -0.0504, 0.0165), (0.0140, 0.0409, 0.0491),
    (-0.0813, -0.0677, 0.0607), (0.0656, 0.0851, 0.0808), (0.0264, 0.0463, 0.0912),
    (0.0295, 0.0326, 0.0590), (-0.0244, -0.0270, 0.0025), (0.0443, -0.0102, 0.0288),
    (-0.0465, -0.0090, -0.0205), (0.0359, 0.0236, 0.0082), (-0.0776, 0.0854, 0.1048),
    (0.0564, 0.0264, 0.0561), (0.0006, 0.0594, 0.0418), (-0.0319, -0.0542, -0.0637),
    (-0.0268, 0.0024, 0.0260), (0.0539, 0.0265, 0.0358), (-0.0359, -0.0312, -0.0287),
    (-0.0285, -0.1032, -0.1237), (0.1041, 0.0537, 0.0622), (-0.0086, -0.0374, -0.0051),
    (0.0390, 0.0670, 0.2863), (0.0069, 0.0144, 0.0082), (0.0006, -0.0167, 0.0079),
    (0.0313, -0.0574, -0.0232), (-0.1454, -0.0902, -0.0481), (0.0714, 0.0827, 0.0447),
    (-0.0304, -0.0574, -0.0196), (0.0401, 0.0384, 0.0204), (-0.0758, -0.0297, -0.0014),
    (0.0568, 0.1307, 0.1372), (-0.0055, -0.0310, -0.0380), (0.0239, -0.0305, 0.0325),
    (-0.0663, -0.0673, -0.0140), (-0.0416, -0.0047, -0.0023), (0.0166, 0.0112, -0.0093),
    (-0.0211, 0.0011, 0.0331), (0.1833, 0.1466, 0.2250), (-0.0368, 0.0370, 0.0295),
    (-0.3441, -0.3543, -0.2008), (-0.0479, -0.0489, -0.0420), (-0.0660, -0.0153, 0.0800),
    (-0.0101, 0.0068, 0.0156), (-0.0690, -0.0452, -0.0927), (-0.0145, 0.0041, 0.0015),
    (0.0421, 0.0451, 0.0373), (0.0504, -0.0483, -0.0356), (-0.0837, 0.0168, 0.0055),
), (0.0317, -0.0878, -0.1388))

_PUBLISHED = {WAN21.channels: WAN21, WAN22.channels: WAN22}
_fitted: dict[str, Projection] = {}
_fit_lock = threading.Lock()


def projection_for(source: Any = None, *, channels: int | None = None, model: str | None = None) -> Projection:
    """The projection for a pipeline or VAE (``source``), or for a bare channel count.

    16 and 48 channels use the published Wan factors; anything else is fitted against the VAE
    once and cached as ``<cache>/previews/<model>-<channels>ch.json``.
    """
    vae = getattr(source, "vae", source)
    if channels is None:
        if vae is None:
            raise ValueError("projection_for needs a pipeline, a VAE or channels=")
        channels = int(vae.config.z_dim)
    if channels in _PUBLISHED:
        return _PUBLISHED[channels]
    if vae is None:
        raise ValueError(f"no published latent->RGB factors for {channels}-channel latents; pass the "
                         "pipeline (or its VAE) so a projection can be fitted against the VAE")
    key = f"{_safe_name(model or type(vae).__name__)}-{channels}ch"
    with _fit_lock:
        if key in _fitted:
            return _fitted[key]
        path = _fit_cache_dir() / f"{key}.json"
        projection = _load_projection(path, channels)
        if projection is None:
            projection = fit_projection(vae)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"name": projection.name, "factors": projection.factors,
                                            "bias": projection.bias}))
            except OSError:
                log.debug("cannot cache the fitted projection at %s", path, exc_info=True)
        _fitted[key] = projection
        return projection


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_") or "model"


def _fit_cache_dir() -> Path:
    from wan_nb.models.specs import cache_dir

    return cache_dir() / "previews"


def _load_projection(path: Path, channels: int) -> Projection | None:
    try:
        raw = json.loads(path.read_text())
        factors = tuple(tuple(float(v) for v in row) for row in raw["factors"])
        bias = tuple(float(v) for v in raw["bias"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if len(factors) != channels or any(len(r) != 3 for r in factors) or len(bias) != 3:
        return None
    return Projection(str(raw.get("name", "fitted")), factors, bias)  # type: ignore[arg-type]


def _synthetic_clips(count: int, frames: int, size: int, seed: int = 0) -> np.ndarray:
    """Smooth, colourful moving clips in [-1, 1], (count, 3, frames, size, size): VAE-friendly."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    clips = np.empty((count, 3, frames, size, size), np.float32)
    for n in range(count):
        base = rng.uniform(-0.8, 0.8, 3)
        grad = rng.uniform(-1.0, 1.0, (3, 2))
        blobs = [(rng.uniform(0, 1, 2), rng.uniform(-0.05, 0.05, 2), rng.uniform(-1, 1, 3),
                  rng.uniform(0.05, 0.25)) for _ in range(3)]
        for t in range(frames):
            img = base[:, None, None] + grad[:, :1, None] * (x - 0.5) + grad[:, 1:, None] * (y - 0.5)
            for centre, speed, colour, radius in blobs:
                cx, cy = centre + speed * t
                mask = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius ** 2))
                img = img + colour[:, None, None] * mask
            clips[n, :, t] = np.clip(img, -1.0, 1.0)
    return clips


def fit_projection(vae: Any, *, clips: int = 6, frames: int = 9, size: int = 64) -> Projection:
    """Least-squares latent -> RGB fit for a diffusers ``AutoencoderKLWan``-like VAE.

    Encodes synthetic clips, normalises the latents as the Wan pipelines do, and regresses each
    latent cell on the mean colour of the pixels it covers (first latent frame: video frame 0;
    later ones: the group of frames they compress).
    """
    import torch

    config = vae.config
    channels = int(config.z_dim)
    video = torch.from_numpy(_synthetic_clips(clips, frames, size))
    device = getattr(vae, "device", torch.device("cpu"))
    dtype = getattr(vae, "dtype", torch.float32)
    with torch.no_grad():
        latents = vae.encode(video.to(device=device, dtype=dtype)).latent_dist.mode().float().cpu()
    shape = (1, channels, 1, 1, 1)
    mean = torch.tensor(config.latents_mean, dtype=torch.float32).view(shape)
    std = torch.tensor(config.latents_std, dtype=torch.float32).view(shape)
    latents = (latents - mean) / std
    lat_frames, lat_h, lat_w = latents.shape[2:]
    temporal = max(1, (frames - 1) // max(1, lat_frames - 1)) if lat_frames > 1 else frames
    groups = [video[:, :, :1]] + [video[:, :, 1 + temporal * (t - 1): 1 + temporal * t]
                                  for t in range(1, lat_frames)]
    target = torch.cat([g.mean(dim=2, keepdim=True) for g in groups], dim=2)
    target = torch.nn.functional.adaptive_avg_pool3d(target, (lat_frames, lat_h, lat_w))
    x = latents.permute(0, 2, 3, 4, 1).reshape(-1, channels).double()
    y = target.permute(0, 2, 3, 4, 1).reshape(-1, 3).double()
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    solution = torch.linalg.lstsq(x1, y).solution  # (channels + 1, 3)
    factors = tuple(tuple(round(float(v), 6) for v in row) for row in solution[:-1])
    bias = tuple(round(float(v), 6) for v in solution[-1])
    return Projection("fitted", factors, bias)  # type: ignore[arg-type]


# -- latents -> frames -> image -------------------------------------------------------------------
def preview_size(height: int, width: int, max_size: int = MAX_SIZE) -> tuple[int, int]:
    """(height, width) with the longest side at most ``max_size`` and the aspect kept."""
    if max_size < 1:
        raise ValueError(f"max_size={max_size}: give a positive number of pixels, e.g. 256")
    scale = min(1.0, max_size / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def project(latents: Any, projection: Projection, *, size: tuple[int, int] | None = None,
            max_size: int = MAX_SIZE) -> np.ndarray:
    """Latents (C, F, h, w) or (B, C, F, h, w) (first video) -> uint8 frames (F, H, W, 3).

    ``size`` is the (height, width) to scale to (e.g. the video's size); it is shrunk to
    ``max_size`` on its longest side. Without it the latent grid's own size is used.
    """
    import torch

    if latents.ndim == 5:
        latents = latents[0]
    if latents.ndim != 4:
        raise ValueError(f"latents of shape {tuple(latents.shape)}: expected (B, C, F, h, w) or (C, F, h, w)")
    channels = latents.shape[0]
    if channels != projection.channels:
        raise ValueError(f"{channels}-channel latents but the {projection.name} projection expects "
                         f"{projection.channels}")
    with torch.no_grad():
        x = latents.detach().float()
        factors = torch.tensor(projection.factors, dtype=torch.float32, device=x.device)
        bias = torch.tensor(projection.bias, dtype=torch.float32, device=x.device)
        rgb = torch.einsum("cfhw,cr->frhw", x, factors) + bias.view(1, 3, 1, 1)
        height, width = preview_size(*(size or rgb.shape[-2:]), max_size=max_size)
        if (height, width) != tuple(rgb.shape[-2:]):
            shrinking = height < rgb.shape[-2] or width < rgb.shape[-1]
            rgb = torch.nn.functional.interpolate(rgb, size=(height, width), mode="bilinear",
                                                  align_corners=False, antialias=shrinking)
        rgb = ((rgb + 1.0) * 127.5).clamp_(0.0, 255.0).round_().to(torch.uint8)
        return rgb.permute(0, 2, 3, 1).contiguous().cpu().numpy()
