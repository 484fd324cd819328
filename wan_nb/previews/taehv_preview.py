"""Preview frames from TAEHV: the estimated clean latents decoded by the tiny decoder, scaled to the
preview size.

Where it runs: on the latents' GPU, in a CUDA stream of its own, when the free memory there holds
what a chunk of the decode needs (with a wide margin); else on the CPU. It never takes memory the
denoiser needs: the decode goes a few latent frames at a time and keeps nothing between previews
but the decoder's weights (about 10 MB in half precision).

The cost model learns a TAEHV preview's seconds per latent cell from a one-off calibration on the
decoder itself (two small decodes), like the projection's (:class:`~wan_nb.previews.rate.CostModel`).
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["TaehvPreview"]

CHUNK = 4                      # latent frames decoded at a time
MARGIN = 3.0                   # free GPU memory must hold this many times a chunk's estimate


class TaehvPreview:
    """Decodes preview frames with the TAEHV at ``path`` (for ``channels``-channel latents)."""

    def __init__(self, path: Path, channels: int) -> None:
        from .taehv_files import load_decoder

        self.path, self.channels = Path(path), channels
        load_decoder(self.path, channels=channels, preview=True)  # checked (and cached) now: a misfit raises here
        self._calibrated: dict[str, tuple[float, float]] = {}

    def device_for(self, latents: Any) -> Any:
        """The latents' GPU if a chunk's decode fits in its free memory (with margin), else the CPU."""
        import torch

        if latents.device.type != "cuda":
            return torch.device("cpu")
        _, _, frames, height, width = latents.shape
        # the widest activation: 64 features at 4x the latent size, 4x the frames of a chunk, fp16,
        # a few alive at once
        need = 64 * (4 * height) * (4 * width) * 4 * min(CHUNK, frames) * 2 * 4
        free, _ = torch.cuda.mem_get_info(latents.device)
        return latents.device if free > MARGIN * need else torch.device("cpu")

    def decoder(self, device: Any) -> Any:
        import torch

        from .taehv_files import load_decoder

        dtype = torch.float16 if getattr(device, "type", str(device)) == "cuda" else torch.float32
        return load_decoder(self.path, channels=self.channels, device=device, dtype=dtype, preview=True)

    def frames(self, latents: Any, size: tuple[int, int], max_size: int) -> np.ndarray:
        """Latents (B, C, F, h, w) -> uint8 frames (T, H', W', 3) at most ``max_size`` on the longest side."""
        import torch

        from .projection import preview_size

        device = self.device_for(latents)
        decoder = self.decoder(device)
        height, width = preview_size(*size, max_size=max_size)
        stream = torch.cuda.Stream(device) if device.type == "cuda" else None
        if stream is not None:  # the latents were made on the denoiser's stream: start after it
            stream.wait_stream(torch.cuda.current_stream(device))
        pieces = []
        with torch.no_grad(), (torch.cuda.stream(stream) if stream is not None else nullcontext()):
            first = latents[:1].detach()
            for _, chunk in decoder.decode_chunks(first.to(device), chunk=CHUNK):
                chunk = torch.nn.functional.interpolate(chunk.float(), size=(height, width), mode="bilinear",
                                                        align_corners=False, antialias=True)
                pieces.append((chunk.permute(0, 2, 3, 1) * 255.0 + 0.5).clamp_(0, 255).to(torch.uint8).cpu())
        if stream is not None:
            stream.synchronize()
        return torch.cat(pieces).numpy()

    def calibration(self, device: Any) -> tuple[float, float]:
        """(overhead s, s per latent cell) of a preview on ``device``, measured once."""
        import torch

        key = str(device)
        if key not in self._calibrated:
            generator = torch.Generator().manual_seed(0)

            def timed(frames: int, grid: int) -> float:
                latents = torch.randn(1, self.channels, frames, grid, grid, generator=generator).to(device)
                best = math.inf
                for _ in range(2):  # the first pass warms up the kernels
                    started = time.perf_counter()
                    self.frames(latents, (grid * 8, grid * 8), 256)
                    best = min(best, time.perf_counter() - started)
                return best

            small, large = timed(1, 4), timed(2, 8)
            per_cell = max(large - small, 1e-9) / (2 * 64 - 16)
            self._calibrated[key] = (max(0.0, small - per_cell * 16), per_cell)
        return self._calibrated[key]

