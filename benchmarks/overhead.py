"""Tracking overhead: Generator.generate against the bare diffusers call plus the same export.

One process, one pipeline object, and every torch call on the same thread — the generator's
worker, where ``generate`` runs the pipeline (``bare`` gets there through
``Generator.run_on_worker``). The arms alternate in ABBA order, so drift in machine load and
cache warmth hits both alike:

- ``bare``: ``pipe(..., output_type="np")`` and the same MP4 export;
- ``generate``: ``Generator.generate`` (events, journal, run folder, memory sampler, relay).

Why the same thread: on CPU, torch's OpenMP runtime keeps a thread team per calling thread, and
once two threads of a process have run torch ops libgomp manages more threads than there are
cores and throttles its spin-waits: every later op of the process, of either arm, runs up to
~2x slower at these sizes (docs/benchmarks.md). Timing ``bare`` on the main thread would charge
that to both arms and bury the tracking cost in it; a notebook that generates through wan_nb
runs torch on the worker only.

Figures: the median of per-pair ratios (generate / bare, each pair back to back) and the ratio
of medians; target <= 1.02. Two cases: the tiny model's decode-dominated 128x128 clip, and a
step-dominated run (80 steps of about a millisecond: the worst case for per-step costs; a real
model's step takes seconds).

    .venv/bin/python benchmarks/overhead.py [--runs 12] [--cases decode,steps]
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

CASES = {
    # 90 % of this run is the VAE decode.
    "decode": dict(height=128, width=128, num_frames=33, steps=10),
    # 80 steps of about a millisecond each: any per-step cost of the tracking shows here first.
    "steps": dict(height=32, width=32, num_frames=9, steps=80),
}
PROMPT = "a red fox running through snow"


def measure(gen, case: str, runs: int, tmp: Path) -> dict:
    import numpy as np
    import torch

    from wan_nb.models.video_io import write_mp4

    spec = CASES[case]
    shape = dict(height=spec["height"], width=spec["width"], num_frames=spec["num_frames"])
    steps = spec["steps"]

    def bare_on_worker(pipe, seed: int) -> float:
        started = time.perf_counter()
        frames = pipe(prompt=PROMPT, negative_prompt="", **shape, num_inference_steps=steps,
                      guidance_scale=1.0, output_type="np",
                      generator=torch.Generator("cpu").manual_seed(seed)).frames[0]
        frames = (np.clip(frames, 0, 1) * 255 + 0.5).astype(np.uint8)
        write_mp4(frames, tmp / f"bare-{case}-{seed}.mp4", fps=16)
        return time.perf_counter() - started

    def bare(seed: int) -> float:
        return gen.run_on_worker(lambda pipe: bare_on_worker(pipe, seed))

    def tracked(seed: int) -> float:
        started = time.perf_counter()
        gen.generate(PROMPT, seed=seed, progress=False, steps=steps, **shape)
        return time.perf_counter() - started

    gen.generate("warm up", seed=0, progress=False, steps=2, **shape)  # load + first-call costs
    bare(0)
    bare_times, tracked_times = [], []
    for run in range(runs):
        # ABBA: whichever side runs second in a pair inherits the other's warm caches.
        if run % 2 == 0:
            bare_times.append(bare(run))
            tracked_times.append(tracked(run))
        else:
            tracked_times.append(tracked(run))
            bare_times.append(bare(run))

    pairs = [t / b for t, b in zip(tracked_times, bare_times)]
    bare_median, tracked_median = statistics.median(bare_times), statistics.median(tracked_times)
    label = f"{shape['height']}x{shape['width']}x{shape['num_frames']}, {steps} steps"
    row = {"case": case, "shape": label, "runs": runs, "bare_s": round(bare_median, 4),
           "generate_s": round(tracked_median, 4), "ratio": round(statistics.median(pairs), 4),
           "ratio_of_medians": round(tracked_median / bare_median, 4),
           "per_step_ms": round((tracked_median - bare_median) / steps * 1000, 3), "target": 1.02}
    print(f"overhead  {label}  bare {bare_median:.3f}s  Generator.generate {tracked_median:.3f}s  "
          f"ratio {row['ratio']:.4f} (median of {runs} pairs; ratio of medians {row['ratio_of_medians']:.4f}; "
          f"target <= 1.02)")
    return row


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--cases", default="decode,steps", help=f"comma-separated, of {', '.join(CASES)}")
    args = parser.parse_args(argv)
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")

    from wan_nb import Generator

    with tempfile.TemporaryDirectory() as tmp:
        gen = Generator(model="tiny", runs_dir=Path(tmp) / "runs", previews=False)
        try:
            return [measure(gen, case, args.runs, Path(tmp)) for case in cases]
        finally:
            gen.close()


if __name__ == "__main__":
    main(sys.argv[1:])
