"""The ``taehv`` section of gpu_check.py: TAEHV next to the full Wan VAE decode.

At 480p (480x832, 81 frames: latents 1x16x21x60x104) with the Wan 2.1 VAE's real architecture
(diffusers' AutoencoderKLWan, random weights, materialised as gpu_check does) and the TAEHV in
the published ``taew2_1`` layout (random weights, unless the real file is already in the Hub
cache: the row's ``weights`` says which), on the same latents:

* the full VAE decode: seconds, peak memory;
* the TAEHV full decode (``decode="taehv"``): seconds, peak memory, speed-up, and PSNR against
  the VAE's frames. With random weights the PSNR only shows the measurement works (two random
  networks agree on nothing); with the published files it is the draft's quality;
* the TAEHV preview (``previews="taehv"``: the whole clip at the 256-pixel preview size, on the
  device the preview picks), median of 3 after a warm-up, against a denoising step's budget.

``--smoke`` runs it on the CPU at the toy VAE and 3x8x8 latents (numbers mean nothing).
"""
from __future__ import annotations

import statistics
import time
from typing import Any

ARCH = "wan2.1-1.3b"


def _psnr(a: Any, b: Any) -> float:
    import math

    mse = float(((a.float() - b.float()) ** 2).mean())
    return round(10 * math.log10(1.0 / mse), 2) if mse > 0 else float("inf")


def _timed(fn: Any, g: Any) -> tuple[Any, float]:
    g.sync()
    started = time.perf_counter()
    out = fn()
    g.sync()
    return out, round(time.perf_counter() - started, 3)


def section(ctx: Any, g: Any) -> list[dict]:
    import torch
    from diffusers import AutoencoderKLWan
    from safetensors.torch import save_file

    from wan_nb.previews import taehv
    from wan_nb.previews.taehv_files import cached_file, load_decoder
    from wan_nb.previews.taehv_preview import TaehvPreview

    a = g.arch(ARCH, ctx.smoke)
    height, width, frames = (64, 64, 9) if ctx.smoke else (a.shape["height"], a.shape["width"], a.shape["num_frames"])
    latent_frames = (frames - 1) // 4 + 1
    latents = torch.randn(1, 16, latent_frames, height // 8, width // 8,
                          generator=torch.Generator().manual_seed(0)).to(ctx.device)
    rows: list[dict] = []
    shape = f"{width}x{height}x{frames}"

    with torch.device("meta"):
        vae = AutoencoderKLWan(**a.vae)
    g.materialize(vae, ctx.device, ctx.dtype)
    g.reset_peak()
    with torch.no_grad():
        video, vae_s = _timed(lambda: vae.decode(latents.to(ctx.dtype)).sample, g)
    reference = ((video.float().clamp(-1, 1) + 1) / 2)[0].transpose(0, 1).cpu()   # (T, 3, H, W) in [0, 1]
    rows.append({"case": "VAE decode (full)", "shape": shape, "s": vae_s, "peak_mb": g.peak_mb(),
                 "weights": "random"})
    del vae, video
    g.free_memory()

    real = cached_file(None, 16)
    path = real
    if path is None:
        path = ctx.tmp / "taew2_1_random.safetensors"
        torch.manual_seed(0)
        state = taehv.build(taehv.TaehvLayout(latent_channels=16)).state_dict()
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    weights = "published" if real is not None else "random"
    dtype = torch.float16 if ctx.device == "cuda" else torch.float32
    decoder = load_decoder(path, channels=16, device=ctx.device, dtype=dtype)
    g.reset_peak()
    with torch.no_grad():
        draft, taehv_s = _timed(lambda: decoder.decode(latents, chunk=4), g)
    draft = draft[0].float().cpu()
    count = min(len(draft), len(reference))
    rows.append({"case": "TAEHV decode (draft)", "shape": shape, "s": taehv_s, "peak_mb": g.peak_mb(),
                 "weights": weights, "speedup": round(vae_s / taehv_s, 1) if taehv_s else None,
                 "frames": int(draft.shape[0]), "psnr_vs_vae_db": _psnr(draft[:count], reference[:count])})
    del decoder, draft

    preview = TaehvPreview(path, 16)
    preview.frames(latents, (height, width), 256)          # warm-up (kernels, the decoder's load)
    times = []
    for _ in range(3):
        _, seconds = _timed(lambda: preview.frames(latents, (height, width), 256), g)
        times.append(seconds)
    rows.append({"case": "TAEHV preview (256 px)", "shape": shape, "s": round(statistics.median(times), 4),
                 "weights": weights, "device": str(preview.device_for(latents))})
    g.print_table(f"taehv: TAEHV against the Wan 2.1 VAE, {shape} ({latent_frames} latent frames)", rows,
                  ["case", "weights", "s", "peak_mb", "speedup", "frames", "psnr_vs_vae_db", "device"])
    return rows

