"""``decode="taehv"``: the final video decoded by the tiny TAEHV decoder instead of the Wan VAE.

A draft: seconds instead of minutes at 720p and a small fraction of the VAE's memory, for grids of
drafts and ``stop_after`` looks. The recipe records ``decode: "taehv"``; ``gen.rerun(run,
decode="vae")`` makes the full-quality video of the same run. The decoder runs on the pipeline's
device, a few latent frames at a time, and reports each chunk.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["decode_with_taehv"]


def decode_with_taehv(run: Any, pipe: Any, latents: Any, source: str | None, share: float = 1.0) -> np.ndarray:
    """``latents`` (1, C, F, h, w) -> uint8 frames (T, H, W, 3); ``run``: the TaskRun reporting it."""
    import torch

    from wan_nb.previews.taehv_files import load_decoder, resolve_file

    channels = int(latents.shape[1])
    path = resolve_file(source, channels, run.load_report())  # cached: no network; else the download stages
    device = latents.device
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    decoder = load_decoder(path, channels=channels, device=device, dtype=dtype)
    total = int(latents.shape[2])
    pieces = []
    for done, frames in decoder.decode_chunks(latents, chunk=4):
        pieces.append((frames.float().permute(0, 2, 3, 1) * 255.0 + 0.5).clamp_(0, 255).byte().cpu().numpy())
        run.progress(f"Draft decode (TAEHV): {done}/{total} latent frames", fraction=share * done / total)
        run.check_cancel()
    return np.concatenate(pieces)
