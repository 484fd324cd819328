"""The planner's own costs and accuracy on this machine (not a timed test: it prints).

* trace time cold (an empty trace cache) and warm (the same plan again: read from the cache),
  for each model/shape given, in one process; ratio cold / warm.
* trace vs a real CPU run: each part of the pipeline at a small real-config shape, traced under
  FakeTensorMode and run for real with random weights; the CPU allocator's peak (the profiler's
  memory records) over the traced activation bytes.
* ``--readme``: the README's "what to pick on 8/12/16/24/48/80 GB" table from the planner.

    PYTHONPATH=. python benchmarks/planner.py [--models wan2.1-t2v-1.3b] [--readme] [--no-cpu-check]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "fast"))

README_MODELS = [("wan2.1-t2v-1.3b", 480, 832, 81), ("wan2.2-ti2v-5b", 704, 1280, 121),
                 ("wan2.1-t2v-14b", 480, 832, 81), ("wan2.1-t2v-14b", 720, 1280, 81),
                 ("wan2.1-i2v-14b-480p", 480, 832, 81), ("wan2.2-t2v-a14b", 480, 832, 81),
                 ("wan2.2-t2v-a14b", 720, 1280, 81)]
README_GB = (8, 12, 16, 24, 48, 80)
README_RAM_GB = 64


def load() -> float:
    return os.getloadavg()[0]


def cold_warm(models: list[str], shape: dict[str, int]) -> None:
    from wan_nb.fast.planner import plan

    print(f"trace time, cold vs warm ({shape['width']}x{shape['height']}x{shape['num_frames']}, "
          f"24 GB card; load {load():.1f})")
    previous = os.environ.get("WAN_NB_CACHE")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["WAN_NB_CACHE"] = cache
        for model in models:
            started = time.perf_counter()
            plan(model, gpu_gb=24, **shape)
            cold = time.perf_counter() - started
            started = time.perf_counter()
            plan(model, gpu_gb=24, **shape)
            warm = time.perf_counter() - started
            print(f"  {model:24s} cold {cold:7.1f} s   warm {warm:6.3f} s   cold/warm x{cold / warm:,.0f}")
    if previous is None:
        os.environ.pop("WAN_NB_CACHE", None)
    else:
        os.environ["WAN_NB_CACHE"] = previous


def cpu_check() -> None:
    import torch

    from test_planner_tracing import T2V_1_3B, VAE, real_run_peak  # the tests' measurement
    from wan_nb.fast import tracing
    from wan_nb.fast.arch_configs import CLIP_VIT_H, UMT5_XXL

    small = dict(height=96, width=160, num_frames=9)
    vae_shape = dict(height=128, width=224, num_frames=9)
    cases = [("transformer (1.3B widths, 2 blocks)", "transformer", dict(T2V_1_3B, num_layers=2), "forward", "t2v",
              small, "bfloat16"),
             ("UMT5-XXL widths, 2 layers", "umt5", dict(UMT5_XXL, num_layers=2, vocab_size=1024), "encode_text", "t2v",
              small, "bfloat16"),
             ("CLIP ViT-H, 2 layers, 2 images", "clip", dict(CLIP_VIT_H, num_hidden_layers=2), "encode_image", "flf2v",
              small, "bfloat16"),
             ("Wan 2.1 VAE decode", "vae", VAE, "decode", "t2v", vae_shape, "float32"),
             ("Wan 2.1 VAE encode", "vae", VAE, "encode", "i2v", vae_shape, "float32")]
    print(f"\ntrace vs a real CPU run (allocator peak / traced activations; load {load():.1f})")
    for label, kind, config, what, pipeline_kind, shape, dtype in cases:
        started = time.perf_counter()
        traced = tracing.trace_part(kind, config, what, pipeline_kind, VAE, shape, dtype)
        traced_s = time.perf_counter() - started
        started = time.perf_counter()
        real = real_run_peak(kind, config, what, pipeline_kind, shape, dtype)
        real_s = time.perf_counter() - started
        print(f"  {label:38s} traced {traced.activation_bytes / 1e6:8.1f} MB ({traced_s:5.1f} s)   real "
              f"{real / 1e6:8.1f} MB ({real_s:5.1f} s)   real/traced {real / traced.activation_bytes:.3f}")
    del torch


def readme_table() -> None:
    from wan_nb.fast.planner import plan

    from wan_nb.fast.cards import card_for_memory

    timed = [card_for_memory(g).name.split("timed as ")[1].rstrip(")") for g in README_GB]
    print(f"\n| model (size) | {' | '.join(f'{g} GB ({t})' for g, t in zip(README_GB, timed))} |")
    print("|---|" + "---|" * len(README_GB))
    for model, height, width, frames in README_MODELS:
        cells = []
        for gb in README_GB:
            best = plan(model, gpu_gb=gb, ram_gb=README_RAM_GB, height=height, width=width, num_frames=frames).best
            if best is None:
                cells.append("does not fit")
                continue
            quant = "bf16" if best.quant is None else best.quant
            tiling = " + tiling" if best.vae_tiling else ""
            cells.append(f"{best.offload} / {quant}{tiling} ({best.vram_gb:.0f} GB, {best.minutes_per_clip:.0f} min)")
        print(f"| {model} ({width}x{height}x{frames}) | {' | '.join(cells)} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="wan2.1-t2v-1.3b,wan2.1-t2v-14b")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=832)
    parser.add_argument("--frames", type=int, default=81)
    parser.add_argument("--no-cold", action="store_true")
    parser.add_argument("--no-cpu-check", action="store_true")
    parser.add_argument("--readme", action="store_true")
    args = parser.parse_args()
    if not args.no_cold:
        cold_warm(args.models.split(","), {"height": args.height, "width": args.width, "num_frames": args.frames})
    if not args.no_cpu_check:
        cpu_check()
    if args.readme:
        readme_table()


if __name__ == "__main__":
    main()
