"""Live previews: the whole clip, every latent frame, while it denoises.

After a denoising step the current latents go through a *linear* latent-to-RGB projection (a
3 x C matrix and a bias: no VAE, so it costs almost nothing next to a step), are scaled to at most
256 px on the longest side and encoded as one animated WebP (GIF where Pillow lacks WebP), which
a browser shows directly. Each preview is published as a ``preview`` event::

    {"step", "total_steps", "mime", "data_b64", "frames", "width", "height", "bytes", "projection"}

What is projected is not the noisy latent itself but the estimate of the clean result the
sampler is heading for (``x0``), extrapolated from the last two latents and the scheduler's
sigmas; with a flow-matching sampler that is exactly ``x_t - sigma_t * velocity``. At the last
step (sigma 0) it *is* the final latent, so the last preview shows what the VAE will decode.

Projections: Wan 2.1-style 16-channel latents and Wan 2.2 TI2V 48-channel latents use the
published factors (the ones ComfyUI ships); other channel counts get a projection fitted by
least squares against the model's own VAE, cached per model in the wan_nb cache folder.

Rate (``Generator(preview_every=...)``):

* an ``int`` N: every N steps, plus the last step;
* a ``float`` S: at most one every S seconds, plus the last step;
* ``None`` (default, adaptive): at most one a second, *and* previews may take at most 3 % of
  the denoising time so far (each preview's cost is predicted from what the previous one cost,
  the first from a one-off calibration, and the preview is skipped if it would break the
  budget). The last step gets a preview when the budget allows it (the one-a-second rule does
  not apply there), so on any run where previews are affordable the final state is shown.
  Step 1 never gets an adaptive preview: there is no step time measured and no x0 estimate yet.

Front ends: :func:`latest_preview` gives the newest preview of a task, :func:`preview_bytes`
the image bytes of a preview event (e.g. for ``ipywidgets.Image(format="webp")``).

``import wan_nb.previews`` does not import torch; the functions that need it import it lazily.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "MAX_SIZE", "MAX_BYTES", "DEFAULT_BUDGET", "DEFAULT_MIN_INTERVAL",
    "Projection", "WAN21", "WAN22", "projection_for", "fit_projection",
    "project", "encode", "RateLimiter", "Previewer", "install",
    "latest_preview", "preview_bytes", "webp_supported",
]

log = logging.getLogger(__name__)

MAX_SIZE = 256                 # longest side of a preview, px
MAX_BYTES = 200_000            # encoded preview (before base64) never exceeds this
DEFAULT_BUDGET = 0.03          # adaptive mode: share of denoising time previews may use
DEFAULT_MIN_INTERVAL = 1.0     # adaptive mode: seconds between previews (last step excepted)
_QUALITY = 70                  # WebP quality; a latent preview is blurry, so this is plenty


# -- projections --------------------------------------------------------------------------------
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
    from .models import cache_dir

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


# -- rate ----------------------------------------------------------------------------------------
def _check_every(every: Any) -> int | float | None:
    if every is None:
        return None
    if isinstance(every, bool) or not isinstance(every, (int, float)):
        raise ValueError(f"preview_every={every!r}: give None (adaptive), an int number of steps "
                         "(e.g. 5) or a float number of seconds (e.g. 2.0)")
    if isinstance(every, int):
        if every < 1:
            raise ValueError(f"preview_every={every}: a number of steps must be at least 1")
        return every
    if not math.isfinite(every) or every <= 0:
        raise ValueError(f"preview_every={every}: a number of seconds must be positive")
    return float(every)


class RateLimiter:
    """Decides at which steps of one run a preview is made (see the module doc for the rules).

    Call :meth:`due` after every step with the predicted cost of a preview, and
    :meth:`spent` with the real cost of each preview made. ``clock`` is injectable for tests.
    """

    def __init__(self, every: int | float | None = None, *, budget: float = DEFAULT_BUDGET,
                 min_interval: float = DEFAULT_MIN_INTERVAL,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.every = _check_every(every)
        self.budget = budget
        self.min_interval = min_interval
        self.clock = clock
        self.first_step_at: float | None = None
        self.last_preview_at: float | None = None
        self.spent_s = 0.0
        self.count = 0

    @property
    def mode(self) -> str:
        if self.every is None:
            return "adaptive"
        return "steps" if isinstance(self.every, int) else "seconds"

    def step_time(self, step: int) -> float | None:
        """Mean denoising step time so far, preview time excluded (None before step 2)."""
        if self.first_step_at is None or step < 2:
            return None
        return max(0.0, self.clock() - self.first_step_at - self.spent_s) / (step - 1)

    def allowance(self, step: int) -> float | None:
        """Seconds of preview work the budget allows up to and including ``step``."""
        mean = self.step_time(step)
        return None if mean is None else self.budget * mean * step

    def due(self, step: int, total: int, expected_cost: float = 0.0) -> bool:
        now = self.clock()
        if self.first_step_at is None:
            self.first_step_at = now  # steps are timed from the end of the first one we see
        last = step >= total
        if self.mode == "steps":
            return last or step % int(self.every) == 0  # type: ignore[arg-type]
        since = now - (self.last_preview_at if self.last_preview_at is not None else self.first_step_at)
        if self.mode == "seconds":
            return last or since >= float(self.every)  # type: ignore[arg-type]
        allowance = self.allowance(step)
        if allowance is None or self.spent_s + expected_cost > allowance:
            return False
        return last or since >= self.min_interval

    def spent(self, seconds: float) -> None:
        self.spent_s += max(0.0, seconds)
        self.count += 1
        self.last_preview_at = self.clock()


# -- the step hook -------------------------------------------------------------------------------
class _CostModel:
    """Predicts a preview's seconds from its output pixels (all frames).

    Before any real preview of this generator: ``overhead + per_pixel * pixels`` from a one-off
    calibration (real projection + encode of two small synthetic clips, once per process), times
    a safety factor, because a preview that breaks the budget is worse than one that comes a step
    late. After that: the measured cost per pixel of the previous previews.
    """

    SAFETY = 2.0
    _calibrated: tuple[float, float] | None = None  # (overhead s, s per pixel), per process
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.per_pixel: float | None = None

    @classmethod
    def calibration(cls) -> tuple[float, float]:
        import torch

        with cls._lock:
            if cls._calibrated is None:
                generator = torch.Generator().manual_seed(0)

                def timed(frames: int, grid: int, size: int) -> tuple[float, int]:
                    latents = torch.randn(16, frames, grid, grid, generator=generator) * 0.3
                    best = math.inf
                    for _ in range(2):  # the first pass also warms up torch and the codec
                        started = time.perf_counter()
                        encode(project(latents, WAN21, size=(size, size)), 100)
                        best = min(best, time.perf_counter() - started)
                    return best, frames * size * size

                small_s, small_px = timed(2, 4, 32)
                large_s, large_px = timed(5, 16, 128)
                per_pixel = max(large_s - small_s, 1e-9) / (large_px - small_px)
                cls._calibrated = (max(0.0, small_s - per_pixel * small_px), per_pixel)
            return cls._calibrated

    def predict(self, pixels: int) -> float:
        if self.per_pixel is not None:
            return self.per_pixel * pixels
        overhead, per_pixel = self.calibration()
        return self.SAFETY * (overhead + per_pixel * pixels)

    def learn(self, pixels: int, seconds: float) -> None:
        rate = seconds / max(1, pixels)
        self.per_pixel = rate if self.per_pixel is None else 0.5 * self.per_pixel + 0.5 * rate


@dataclass
class _RunState:
    task_id: str
    limiter: RateLimiter
    previous: Any = None  # latents after the previous step (for the x0 estimate)
    projection: Projection | None = None


class Previewer:
    """The step hook that turns latents into ``preview`` events for one generator."""

    def __init__(self, publish: Callable[..., Any], every: int | float | None = None, *,
                 budget: float = DEFAULT_BUDGET, min_interval: float = DEFAULT_MIN_INTERVAL,
                 max_size: int = MAX_SIZE, max_bytes: int = MAX_BYTES, model: str | None = None) -> None:
        self.publish = publish
        self.every = _check_every(every)
        self.budget, self.min_interval = budget, min_interval
        self.max_size, self.max_bytes = max_size, max_bytes
        self.model = model
        self._state: _RunState | None = None  # one worker thread runs one task at a time
        self._cost = _CostModel()  # learned across this generator's runs (sizes rarely change)

    def __call__(self, task: Any, step: int, timestep: Any, latents: Any, pipe: Any) -> None:
        if latents is None:
            return
        total = int(task.params["steps"])
        state = self._state
        if state is None or state.task_id != task.id or step == 1:
            state = self._state = _RunState(task.id, RateLimiter(
                self.every, budget=self.budget, min_interval=self.min_interval))
        p = task.params
        out_h, out_w = preview_size(int(p["height"]), int(p["width"]), self.max_size)
        lat_frames = int(latents.shape[2])
        pixels = lat_frames * out_h * out_w
        expected = self._cost.predict(pixels) if state.limiter.mode == "adaptive" else 0.0
        try:
            if state.limiter.due(step, total, expected):
                started = time.perf_counter()
                self.make_preview(task, step, total, latents, pipe, state)
                cost = time.perf_counter() - started
                self._cost.learn(pixels, cost)
                state.limiter.spent(cost)
        finally:
            # Keep this step's latents for the next step's x0 estimate (a copy: a scheduler may
            # update its tensors in place). Dropped at the last step.
            state.previous = latents.detach().clone() if step < total else None
            if step >= total:
                self._state = None

    def make_preview(self, task: Any, step: int, total: int, latents: Any, pipe: Any,
                     state: _RunState) -> dict[str, Any]:
        if state.projection is None:
            state.projection = projection_for(pipe, channels=int(latents.shape[1]), model=self.model)
        clean = estimate_clean(latents, state.previous, pipe)
        p = task.params
        frames = project(clean, state.projection, size=(int(p["height"]), int(p["width"])),
                         max_size=self.max_size)
        temporal = int(getattr(pipe, "vae_scale_factor_temporal", 4) or 4)
        data, mime, (height, width) = encode(frames, frame_durations(len(frames), p.get("fps") or 16, temporal),
                                             max_bytes=self.max_bytes)
        fields = {"step": step, "total_steps": total, "mime": mime,
                  "data_b64": base64.b64encode(data).decode("ascii"), "frames": len(frames),
                  "width": width, "height": height, "bytes": len(data),
                  "projection": state.projection.name}
        self.publish(task, fields)
        return fields


def estimate_clean(latents: Any, previous: Any, pipe: Any) -> Any:
    """The sampler's current estimate of the clean latents (x0), or ``latents`` if unknown.

    With ``x_t = (1 - sigma) x0 + sigma * noise`` the last step's move ``x_t - x_prev`` is
    ``(sigma_t - sigma_prev) * velocity`` (exactly for Euler, approximately for multistep
    solvers), and ``x0 = x_t - sigma_t * velocity``.
    """
    scheduler = getattr(pipe, "scheduler", None)
    index = getattr(scheduler, "step_index", None)
    sigmas = getattr(scheduler, "sigmas", None)
    if previous is None or index is None or sigmas is None or not 1 <= index < len(sigmas) \
            or previous.shape != latents.shape:
        return latents
    sigma_t, sigma_prev = float(sigmas[index]), float(sigmas[index - 1])
    if abs(sigma_t - sigma_prev) < 1e-6:
        return latents
    x_t = latents.float()
    velocity = (x_t - previous.to(x_t.device, x_t.dtype)) / (sigma_t - sigma_prev)
    return x_t - sigma_t * velocity


def install(generator: Any) -> Previewer:
    """Attach a :class:`Previewer` to ``generator`` (called by ``Generator(previews=True)``)."""
    bus = generator.bus

    def publish(task: Any, fields: Mapping[str, Any]) -> None:
        bus.publish(task.id, "preview", **fields)

    previewer = Previewer(publish, generator.preview_every, model=getattr(generator, "model", None))
    generator.add_step_hook(previewer)
    generator._previewer = previewer
    return previewer


# -- front-end helpers ---------------------------------------------------------------------------
def latest_preview(task: Any) -> dict[str, Any] | None:
    """The data of the newest ``preview`` event of a task (None if it has none yet)."""
    for event in reversed(task.events):
        if event.type == "preview":
            return dict(event.data)
    return None


def preview_bytes(preview: Any) -> bytes:
    """The image bytes of a preview event (or its data dict), ready for an ``<img>`` or
    ``ipywidgets.Image(format=...)`` (format: the part of ``mime`` after ``image/``)."""
    data = getattr(preview, "data", preview)
    return base64.b64decode(data["data_b64"])
