"""Tracking overhead: Generator.generate against the bare diffusers call plus the same export.

Same tiny pipeline object, same shape, runs interleaved in ABBA order so drift in machine load
and cache warmth hit both sides; prints the medians and their ratio (target <= 1.02).

    .venv/bin/python benchmarks/overhead.py [--runs 7] [--height 128 --width 128 --frames 33 --steps 10]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("WAN_NB_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "bench"))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--model", default="tiny")
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from wan_nb import Generator
    from wan_nb.video import write_mp4

    shape = dict(height=args.height, width=args.width, num_frames=args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        gen = Generator(model=args.model, runs_dir=Path(tmp) / "runs", previews=False)
        gen.generate("warm up", seed=0, progress=False, steps=2, **shape)  # load + first-call costs
        pipe = gen.pipeline

        def bare(seed: int) -> float:
            started = time.perf_counter()
            frames = pipe(prompt="a red fox running through snow", negative_prompt="", **shape,
                          num_inference_steps=args.steps, guidance_scale=1.0, output_type="np",
                          generator=torch.Generator("cpu").manual_seed(seed)).frames[0]
            frames = (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)
            write_mp4(frames, Path(tmp) / f"bare-{seed}.mp4", fps=16)
            return time.perf_counter() - started

        def tracked(seed: int) -> float:
            started = time.perf_counter()
            gen.generate("a red fox running through snow", seed=seed, progress=False, steps=args.steps, **shape)
            return time.perf_counter() - started

        bare_times, tracked_times = [], []
        for run in range(args.runs):
            # ABBA order: whichever side runs second in a pair inherits the other's warm caches,
            # so alternate who goes first.
            if run % 2 == 0:
                bare_times.append(bare(run))
                tracked_times.append(tracked(run))
            else:
                tracked_times.append(tracked(run))
                bare_times.append(bare(run))
        gen.close()

    bare_median, tracked_median = statistics.median(bare_times), statistics.median(tracked_times)
    ratio = tracked_median / bare_median
    row = {"shape": f"{args.height}x{args.width}x{args.frames}, {args.steps} steps", "runs": args.runs,
           "bare_s": round(bare_median, 3), "generate_s": round(tracked_median, 3), "ratio": round(ratio, 4),
           "target": 1.02}
    print(f"overhead  {row['shape']}  bare {bare_median:.3f}s  Generator.generate {tracked_median:.3f}s  "
          f"ratio {ratio:.4f} (target <= 1.02, medians of {args.runs} interleaved runs)")
    return row


if __name__ == "__main__":
    main(sys.argv[1:])
