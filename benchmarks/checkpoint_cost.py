"""Denoising checkpoint cost as a share of step time (target: <= 1 % at the default pacing).

For the real latent sizes (Wan 2.1 480p and 720p, 81 frames; Wan 2.2 TI2V-5B 704x1280, 121
frames) it builds the state a real run checkpoints: the latents, a UniPC scheduler (what every
Wan repo ships) two steps into a 50-step schedule (so its history holds two model outputs and the
last sample, each as large as the latents) and the RNG state, and writes it with the real
``RunCheckpoints.save`` (serialise, fsync, atomic rename, summary file) into a temporary folder.

Printed per case: the checkpoint's size and write time (median of ``--repeats``), the ratio to a
bare ``torch.save`` of the latents alone (the baseline, same process, same disk), the share one
checkpoint per step would take of a stated step time, and how often the default pacing (<= 1 %
of denoising time, at least every 3 minutes) writes one, with the share that gives.

    .venv/bin/python benchmarks/checkpoint_cost.py [--repeats 5] [--dir DIR]
"""
from __future__ import annotations

import argparse
import io
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (case, latent shape, stated seconds per step and where the figure comes from)
CASES = [
    ("Wan 2.1 T2V-1.3B 480p 81f", (1, 16, 21, 60, 104), 4.8, "Wan 2.1 README: ~4 min / 50 steps, RTX 4090"),
    ("Wan 2.1 T2V-14B 720p 81f", (1, 16, 21, 90, 160), 20.0, "14B at 720p, one H100-class GPU (as benchmarks/previews.py)"),
    ("Wan 2.2 TI2V-5B 704p 121f", (1, 48, 31, 44, 80), 10.0, "Wan 2.2 README: < 9 min / 50 steps, RTX 4090"),
]


def state_at_step_two(shape: tuple[int, ...]) -> tuple[object, object, object]:
    """(latents, a pipeline-like holder of the UniPC scheduler, the RNG) after two real solver steps."""
    import torch
    from diffusers import UniPCMultistepScheduler

    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=5.0)
    scheduler.set_timesteps(50)
    rng = torch.Generator("cpu").manual_seed(0)
    latents = torch.randn(shape, generator=rng)
    for t in scheduler.timesteps[:2]:
        latents = scheduler.step(torch.randn(shape, generator=rng), t, latents).prev_sample
    return latents, SimpleNamespace(scheduler=scheduler), rng


def measure(shape: tuple[int, ...], folder: Path, repeats: int) -> dict[str, float]:
    import torch

    from wan_nb.core.checkpoint import Pacing, RunCheckpoints
    from wan_nb.core.task import Task

    latents, pipe, rng = state_at_step_two(shape)
    folder.mkdir(parents=True, exist_ok=True)
    task = Task(None, "bench", {"steps": 50, "seed": 0, "prompt": ""}, folder)
    run = RunCheckpoints(task, Pacing(every_steps=1 << 30), recipe_key="bench", decode=lambda *a: None)
    run.step_end(2, pipe, latents, None, rng)
    costs, sizes, bare = [], [], []
    for _ in range(repeats):
        fields = run.save("paced")["checkpoint"]
        costs.append(fields["seconds"])
        sizes.append(fields["bytes"])
        began = time.perf_counter()
        buffer = io.BytesIO()
        torch.save(latents, buffer)
        with open(folder / "bare.pt", "wb") as out:
            out.write(buffer.getbuffer())
            out.flush()
            os.fsync(out.fileno())
        bare.append(time.perf_counter() - began)
    return {"seconds": statistics.median(costs), "bytes": statistics.median(sizes), "bare": statistics.median(bare)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dir", type=Path, help="where to write (default: a temporary folder)")
    args = parser.parse_args()
    from wan_nb.core.checkpoint import Pacing

    pacing = Pacing()
    root = args.dir or Path(tempfile.mkdtemp(prefix="wan-nb-ckpt-bench-"))
    print(f"writing into {root} (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    header = (f"{'case':<28} {'latents':<22} {'MB':>6} {'write s':>8} {'x bare':>7} {'step s':>7} "
              f"{'every step':>10} {'default: every':>15} {'share':>7}")
    print(header)
    for name, shape, step_s, source in CASES:
        found = measure(shape, root / name.replace(" ", "_"), args.repeats)
        cost = found["seconds"]
        interval_s = min(max(cost / pacing.budget, step_s), pacing.max_interval_s)
        every = max(1, math.ceil(interval_s / step_s))
        share = cost / (every * step_s)
        print(f"{name:<28} {str(shape):<22} {found['bytes'] / 1e6:>6.1f} {cost:>8.3f} "
              f"{cost / found['bare']:>7.2f} {step_s:>7.1f} {cost / step_s:>10.2%} "
              f"{f'{every} steps':>15} {share:>7.2%}")
    print("step s: stated, not measured here —", "; ".join(f"{n}: {s}" for n, _, _, s in CASES))


if __name__ == "__main__":
    main()
