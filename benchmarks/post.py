"""Post-processing speed, as ratios measured in this process.

1. Draft decode: TAEHV (random weights in the published layout) against the Wan 2.1 VAE's real
   architecture (diffusers' AutoencoderKLWan with its default configuration, random weights), decoding
   the same latents. The ratio is what ``decode="taehv"`` saves; it does not depend on the weights.
2. Interpolation x2 of an 81-frame clip: ffmpeg's motion interpolation and RIFE 4.6 (random weights),
   frame pairs a second.
3. Upscaling x2 with Lanczos, frames a second.

    .venv/bin/python benchmarks/post.py [--size 160] [--latent-frames 5] [--quick]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("WAN_NB_CACHE", str(ROOT / ".cache" / "bench"))


def timed(fn, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def draft_decode(args) -> dict:
    import torch
    from diffusers import AutoencoderKLWan

    from _taehv_helpers import write_taehv
    from wan_nb.previews.taehv_files import load_decoder

    grid = args.size // 8
    latents = torch.randn(1, 16, args.latent_frames, grid, grid, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        taehv = load_decoder(write_taehv(Path(tmp) / "taew2_1.safetensors"), channels=16)
        taehv_s = timed(lambda: taehv.decode(latents, chunk=4), 1 if args.quick else 2)
    vae = AutoencoderKLWan().eval()     # the Wan 2.1 VAE's architecture (z_dim 16, base 96)
    with torch.no_grad():
        vae_s = timed(lambda: vae.decode(latents), 1)
    frames = 4 * (args.latent_frames - 1) + 1
    return {"what": f"decode {frames} frames {args.size}x{args.size}", "vae_s": vae_s, "taehv_s": taehv_s,
            "ratio": vae_s / taehv_s}


def interpolation(args) -> dict:
    from wan_nb.post.interpolation import interpolate_ffmpeg, interpolate_pairs
    from wan_nb.post.rife import RifeNet

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (args.frames, 128, 128, 3), dtype=np.uint8)
    ffmpeg_s = timed(lambda: interpolate_ffmpeg(frames, 16.0, 32.0), 1)
    rife = RifeNet().eval()
    few = frames[: 9 if args.quick else 21]
    rife_s = timed(lambda: interpolate_pairs(few, 2, rife.middle), 1) * (len(frames) - 1) / (len(few) - 1)
    return {"pairs": len(frames) - 1, "ffmpeg_s": ffmpeg_s, "rife_s": rife_s}


def upscaling(args) -> dict:
    from wan_nb.post.upscaling import upscale_lanczos

    frames = np.random.default_rng(0).integers(0, 255, (17, args.size, args.size, 3), dtype=np.uint8)
    seconds = timed(lambda: upscale_lanczos(frames, (2 * args.size, 2 * args.size)), 1)
    return {"frames": len(frames), "lanczos_s": seconds}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--latent-frames", type=int, default=5)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    decode = draft_decode(args)
    print(f"{decode['what']}: Wan VAE {decode['vae_s']:.2f} s, TAEHV {decode['taehv_s']:.2f} s "
          f"-> TAEHV is {decode['ratio']:.1f}x faster")
    inter = interpolation(args)
    print(f"interpolate x2, {inter['pairs']} pairs at 128x128: ffmpeg {inter['ffmpeg_s']:.2f} s "
          f"({inter['pairs'] / inter['ffmpeg_s']:.0f} pairs/s), RIFE 4.6 {inter['rife_s']:.2f} s "
          f"({inter['pairs'] / inter['rife_s']:.1f} pairs/s; timed on part of the clip, scaled)")
    up = upscaling(args)
    print(f"upscale x2 Lanczos, {up['frames']} frames {args.size}->{2 * args.size}: {up['lanczos_s']:.2f} s "
          f"({up['frames'] / up['lanczos_s']:.0f} frames/s)")
    return {"decode": decode, "interpolation": inter, "upscaling": up}


if __name__ == "__main__":
    main()
