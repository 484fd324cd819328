"""Preview cost as a share of denoising step time (target: <= 3 % at the default rate).

Two measurements:

1. The tiny model, really run (128x128, 33 frames, 10 steps by default): the mean step time
   without previews, the cost of one preview (from ``preview_every=1`` runs), and the share that
   previews take in runs at the default adaptive rate.
2. A realistic latent size, made synthetically (480x832, 81 frames -> latents (1, 16, 21, 60, 104);
   and Wan 2.2 TI2V 704x1280, 121 frames -> (1, 48, 31, 44, 80)): the measured cost of one
   preview on this machine, and the share at the default rate for a range of stated step times,
   by running the real rate limiter over a simulated step clock with real preview work.

3. TAEHV previews at the same realistic sizes (random weights in the published layout: the cost
   does not depend on the weights), through the same rate limiter.

    .venv/bin/python benchmarks/previews.py [--runs 3] [--steps 10] [--quick] [--only-taehv | --no-taehv]
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("WAN_NB_CACHE", str(Path(__file__).resolve().parents[1] / ".cache" / "bench"))

# Stated step times (s) of real models at the realistic sizes, for context. Wan 2.1's README
# gives ~4 min for 50 steps of T2V-1.3B at 480p on an RTX 4090 (~4.8 s a step); the 14B models
# and Wan 2.2 at 720p take several times longer per step. 1 s stands for a fast, heavily
# optimised GPU run, the worst case for preview overhead.
STATED_STEP_S = (1.0, 4.8, 20.0)


def _timed_previewer(gen):
    """Wrap the generator's previewer so each preview's wall time is recorded."""
    previewer = gen._previewer
    costs: list[float] = []
    original = previewer.make_preview

    def make_preview(*args, **kwargs):
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            costs.append(time.perf_counter() - started)

    previewer.make_preview = make_preview
    return costs


def tiny_model(args) -> list[dict]:
    from wan_nb import Generator

    shape = dict(height=args.height, width=args.width, num_frames=args.frames, steps=args.steps)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        plain = Generator("tiny", runs_dir=Path(tmp) / "a", previews=False)
        every = Generator("tiny", runs_dir=Path(tmp) / "b", preview_every=1)
        adaptive = Generator("tiny", runs_dir=Path(tmp) / "c")
        every_costs, adaptive_costs = _timed_previewer(every), _timed_previewer(adaptive)
        for gen in (plain, every, adaptive):
            gen.generate("warm up", seed=0, progress=False, steps=2,
                         **{k: v for k, v in shape.items() if k != "steps"})
        step_times, adaptive_shares, adaptive_counts = [], [], []
        every_costs.clear(), adaptive_costs.clear()
        for run in range(args.runs):
            marks: list[float] = []
            off = plain.add_step_hook(lambda *a: marks.append(time.perf_counter()))
            plain.generate("a red fox running through snow", seed=run, progress=False, **shape)
            off()
            step_times.append((marks[-1] - marks[0]) / (len(marks) - 1))
            every.generate("a red fox running through snow", seed=run, progress=False, **shape)
            before = len(adaptive_costs)
            marks = []
            off = adaptive.add_step_hook(lambda *a: marks.append(time.perf_counter()))
            adaptive.generate("a red fox running through snow", seed=run, progress=False, **shape)
            off()
            spent = sum(adaptive_costs[before:])
            adaptive_counts.append(len(adaptive_costs) - before)
            denoise = (marks[-1] - marks[0]) * len(marks) / max(1, len(marks) - 1)
            adaptive_shares.append(spent / denoise)
        step = statistics.median(step_times)
        cost = statistics.median(every_costs)
        rows.append(dict(case=f"tiny {args.height}x{args.width}, {args.frames} frames, {args.steps} steps",
                         latents=f"(1,16,{(args.frames - 1) // 4 + 1},{args.height // 8},{args.width // 8})",
                         step_s=step, step_source="measured", preview_s=cost,
                         per_preview=cost / step, default_count=statistics.median(adaptive_counts),
                         default_share=statistics.median(adaptive_shares)))
    return rows


def synthetic(args) -> list[dict]:
    import torch

    from wan_nb.previews import Previewer, RateLimiter

    cases = [("Wan 2.1 480x832, 81 frames", (1, 16, 21, 60, 104), 480, 832, 16),
             ("Wan 2.2 TI2V 704x1280, 121 frames", (1, 48, 31, 44, 80), 704, 1280, 24)]
    rows = []
    for name, shape, height, width, fps in cases:
        generator = torch.Generator().manual_seed(0)
        # Denoised latents are smooth: low-frequency noise upsampled to the latent grid.
        coarse = torch.randn(1, shape[1] * shape[2], shape[3] // 8, shape[4] // 8, generator=generator)
        clean = torch.nn.functional.interpolate(coarse, size=shape[3:], mode="bicubic").view(shape) * 1.5
        noise = torch.randn(shape, generator=generator)
        task = SimpleNamespace(id="bench", params=dict(steps=args.real_steps, height=height, width=width, fps=fps))
        sent: list[dict] = []
        previewer = Previewer(lambda t, fields: sent.append(fields))
        pipe = SimpleNamespace(vae_scale_factor_temporal=4, scheduler=None)

        def one_preview(sigma: float) -> float:
            latents = (1 - sigma) * clean + sigma * noise
            state = SimpleNamespace(projection=None, previous=None, kind="latent2rgb", fallback=None)
            started = time.perf_counter()
            previewer.make_preview(task, 1, args.real_steps, latents, pipe, state)
            return time.perf_counter() - started

        one_preview(0.5)  # warm-up
        costs = [one_preview(s) for s in (0.8, 0.5, 0.2, 0.0)]
        cost = statistics.median(costs)
        size = max(f["bytes"] for f in sent)
        for step_s in STATED_STEP_S:
            # The real limiter over a simulated clock; every preview it allows is really made.
            clock = SimpleNamespace(now=0.0)
            limiter = RateLimiter(clock=lambda: clock.now)
            model_cost = None
            for step in range(1, args.real_steps + 1):
                clock.now += step_s
                expected = model_cost if model_cost is not None else cost
                if limiter.due(step, args.real_steps, expected):
                    spent = one_preview(1.0 - step / args.real_steps)
                    model_cost = spent
                    clock.now += spent
                    limiter.spent(spent)
            rows.append(dict(case=name, latents=str(shape).replace(" ", ""), step_s=step_s,
                             step_source="stated", preview_s=cost, per_preview=cost / step_s,
                             default_count=limiter.count,
                             default_share=limiter.spent_s / (args.real_steps * step_s), bytes=size))
            if args.quick:
                break
    return rows


def taehv_rows(args) -> list[dict]:
    """TAEHV previews at the real latent sizes, with a TAEHV of random weights in the published layout
    (the cost does not depend on the weights). The decode goes a few latent frames at a time and its
    cost is linear in the frames, so one preview is timed on ``--taehv-frames`` latent frames at the
    full height and width and scaled to the clip (said in the row); then the real rate limiter runs
    over the stated step times with that cost."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from _taehv_helpers import write_taehv
    from wan_nb.previews import Previewer, RateLimiter
    from wan_nb.previews.taehv_preview import TaehvPreview

    cases = [("TAEHV Wan 2.1 480x832, 81 frames", (1, 16, 21, 60, 104), 480, 832, 16, 1),
             ("TAEHV Wan 2.2 TI2V 704x1280, 121 fr", (1, 48, 31, 44, 80), 704, 1280, 24, 2)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, shape, height, width, fps, patch in cases:
            path = write_taehv(Path(tmp) / f"taehv{shape[1]}.safetensors", shape[1], patch)
            preview = TaehvPreview(path, shape[1])
            task = SimpleNamespace(id="bench", params=dict(steps=args.real_steps, height=height, width=width, fps=fps))
            previewer = Previewer(lambda t, fields: None)
            state = SimpleNamespace(projection=None, previous=None, kind="taehv", taehv=preview, fallback=None)
            pipe = SimpleNamespace(vae_scale_factor_temporal=4, scheduler=None)
            part = min(shape[2], args.taehv_frames)
            latents = torch.randn(shape[0], shape[1], part, *shape[3:], generator=torch.Generator().manual_seed(0))
            previewer.make_preview(task, 1, args.real_steps, latents[:, :, :1, :8, :8], pipe, state)  # warm-up
            started = time.perf_counter()
            previewer.make_preview(task, 1, args.real_steps, latents, pipe, state)
            cost = (time.perf_counter() - started) * shape[2] / part
            for step_s in STATED_STEP_S:
                clock = SimpleNamespace(now=0.0)
                limiter = RateLimiter(clock=lambda: clock.now)
                for step in range(1, args.real_steps + 1):
                    clock.now += step_s
                    if limiter.due(step, args.real_steps, cost):
                        clock.now += cost
                        limiter.spent(cost)
                rows.append(dict(case=name, latents=str(shape).replace(" ", ""), step_s=step_s,
                                 step_source="stated", preview_s=cost, per_preview=cost / step_s,
                                 default_count=limiter.count,
                                 default_share=limiter.spent_s / (args.real_steps * step_s),
                                 note=f"timed on {part} of {shape[2]} latent frames, scaled"))
                if args.quick:
                    break
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--frames", type=int, default=33)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--real-steps", type=int, default=50, help="steps of the simulated realistic runs")
    parser.add_argument("--quick", action="store_true", help="one stated step time per realistic case")
    parser.add_argument("--taehv-frames", type=int, default=1, help="latent frames a TAEHV preview is timed on")
    parser.add_argument("--no-taehv", action="store_true", help="leave out the TAEHV rows")
    parser.add_argument("--only-taehv", action="store_true", help="only the TAEHV rows")
    args = parser.parse_args(argv)

    from wan_nb import previews

    rows = [] if args.only_taehv else tiny_model(args) + synthetic(args)
    rows += [] if args.no_taehv else taehv_rows(args)
    print(f"preview format: {'animated WebP' if previews.webp_supported() else 'GIF'}, "
          f"<= {previews.MAX_SIZE} px, <= {previews.MAX_BYTES} bytes; default rate: adaptive "
          f"(<= 1/s, <= {previews.DEFAULT_BUDGET:.0%} of step time)")
    header = (f"{'case':<40} {'latents':<20} {'step s':>8} {'':>8} {'preview s':>9} "
              f"{'1 preview/step':>14} {'default: n':>10} {'share':>7}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['case']:<40} {r['latents']:<20} {r['step_s']:>8.3f} {r['step_source']:>8} "
              f"{r['preview_s']:>9.4f} {r['per_preview']:>13.1%} {r['default_count']:>10} "
              f"{r['default_share']:>7.2%}" + (f"  ({r['note']})" if r.get("note") else ""))
    sizes = [r["bytes"] for r in rows if "bytes" in r]
    if sizes:
        print(f"largest realistic preview: {max(sizes)} bytes")
    worst = max(r["default_share"] for r in rows)
    print(f"worst share at the default rate: {worst:.2%} (target <= {previews.DEFAULT_BUDGET:.0%})")
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
