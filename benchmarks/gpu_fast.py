"""The ``fast`` section of gpu_check.py: the fast path at the Wan 2.1 1.3B real size, random weights.

* cache: every cache mode (``Generator.generate(cache=...)``) against the uncached run with the
  same seed, interleaved: seconds a step (device-synchronised), speed-up, steps reused (from the
  step events) and PSNR of the decoded frames (final latents through the VAE) vs the uncached
  run. MagCache's first run measures its ratio curve and is reported apart. 480x832, 33 frames,
  10 steps, guidance 5 (two passes a step).
* attention: ``Generator(attention=...)`` for native SDPA, cuDNN, flash (package), sage
  (package); a backend whose kernel is missing is refused by the Generator (the row says why).
* compile: ``Generator(compile=True)`` (regional: the repeated blocks): first run (with compile
  time) and a second run, seconds a step vs eager.
(The planner's predicted peaks against measured ones are ``gpu_planner.py``'s section.)

``--smoke`` runs it all on the CPU at the toy size (numbers mean nothing).
"""
from __future__ import annotations

import math
import time
import traceback
from typing import Any

from wan_nb.fast import cache as cache_modes

ARCH = "wan2.1-1.3b"
PRESET = "wan2.1-t2v-1.3b"
CACHE_SHAPE = dict(height=480, width=832, num_frames=33)
SMOKE_SHAPE = dict(height=64, width=64, num_frames=9)
# Every mode wan_nb.fast.cache owns (sea and text-kv included), and a reusing mode with text-kv.
CACHE_MODES = (*cache_modes.CACHE_MODES, f"first-block+{cache_modes.TEXT_KV}")
BACKENDS = ("native", "_native_cudnn", "flash", "sage")


def _psnr(a: Any, b: Any) -> float | None:
    import numpy as np

    if a is None or b is None:
        return None
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else round(10 * math.log10(255.0 ** 2 / mse), 2)


def _timed_run(g: Any, ctx: Any, gen: Any, steps: int, shape: dict, **kwargs: Any) -> dict:
    """One run: device-synchronised step times, reused steps, decoded frames of the final latents."""
    from wan_nb.models.video_io import decode_latents

    clock = g.StepClock()
    off = gen.add_step_hook(clock)
    g.reset_peak()
    started = time.perf_counter()
    try:
        task, status = g.run_task(gen, ctx.budget_s * 2, steps=steps, seed=7, **shape, **kwargs)
    finally:
        off()
    total = time.perf_counter() - started
    gen.bus.drain(timeout=5.0)
    reused = sum(1 for e in task.events if e.type == "detailed_generation_progress" and e.data.get("step_reused"))
    frames = None
    if clock.latents is not None and status == "completed":
        frames = gen.run_on_worker(lambda pipe: decode_latents(pipe, clock.latents))
    step_s = clock.step_seconds()
    return {"status": status, "total_s": round(total, 2), "reused_steps": reused, "frames": frames,
            "s_per_step": round(sum(step_s) / len(step_s), 4) if step_s else None, "peak_mb": g.peak_mb()}


def cache_rows(ctx: Any, g: Any) -> list[dict]:
    pipe = ctx.pipeline(ARCH)
    shape = SMOKE_SHAPE if ctx.smoke else CACHE_SHAPE
    steps = 6 if ctx.smoke else 10
    gen = ctx.generator(pipe, ARCH)
    rows: list[dict] = []
    try:
        _timed_run(g, ctx, gen, 1, shape)  # warm-up
        for mode in (None, *CACHE_MODES):
            try:
                if mode == "mag":
                    from wan_nb.fast.cache import forget_ratios

                    forget_ratios(gen.model)  # so this run measures the curve, whatever ran before
                    calibration = _timed_run(g, ctx, gen, steps, shape, cache="mag")
                    rows.append({"case": "cache mag (calibration run)", **_public(calibration)})
                base = _timed_run(g, ctx, gen, steps, shape)
                if mode is None:
                    rows.append({"case": "cache none", **_public(base)})
                    continue
                run = _timed_run(g, ctx, gen, steps, shape, cache=mode)
                rows.append({"case": f"cache {mode}", **_public(run),
                             "speedup": round(base["total_s"] / run["total_s"], 3) if run["total_s"] else None,
                             "step_speedup": round(base["s_per_step"] / run["s_per_step"], 3)
                             if base["s_per_step"] and run["s_per_step"] else None,
                             "psnr_db": _psnr(run["frames"], base["frames"])})
            except Exception as exc:
                traceback.print_exc()
                rows.append({"case": f"cache {mode}", "status": f"failed: {type(exc).__name__}: {exc}"[:300]})
    finally:
        gen.close()
    for r in rows:
        r.update(arch=ARCH, steps=steps, shape=f"{shape['width']}x{shape['height']}x{shape['num_frames']}")
    return rows


def _public(run: dict) -> dict:
    return {k: v for k, v in run.items() if k != "frames"}


def attention_rows(ctx: Any, g: Any) -> list[dict]:
    pipe = ctx.pipeline(ARCH)
    shape = SMOKE_SHAPE if ctx.smoke else CACHE_SHAPE
    steps = 3 if ctx.smoke else 4
    rows: list[dict] = []
    base = None
    for name in BACKENDS if not ctx.smoke else ("native", "flash"):
        row: dict[str, Any] = {"arch": ARCH, "case": f"attention {name}", "steps": steps}
        try:
            gen = ctx.generator(pipe, ARCH, attention=name)
        except ValueError as exc:  # the Generator refuses a missing kernel before any work
            rows.append({**row, "status": f"refused: {exc}"[:300]})
            continue
        try:
            run = _timed_run(g, ctx, gen, steps, shape)
            row.update(_public(run))
            base = base or run["s_per_step"]
            if base and run["s_per_step"]:
                row["step_speedup"] = round(base / run["s_per_step"], 3)
        except Exception as exc:
            row["status"] = f"failed: {type(exc).__name__}: {exc}"[:300]
        finally:
            gen.close()
        rows.append(row)
    pipe.transformer.set_attention_backend("native")
    pipe._wan_nb_fast = ("native", False)
    return rows


def compile_rows(ctx: Any, g: Any) -> list[dict]:
    import torch

    shape = SMOKE_SHAPE if ctx.smoke else CACHE_SHAPE
    steps = 3 if ctx.smoke else 4
    pipe = ctx.pipeline(ARCH)
    rows: list[dict] = []
    eager = ctx.generator(pipe, ARCH)
    try:
        base = _timed_run(g, ctx, eager, steps, shape)
    finally:
        eager.close()
    rows.append({"arch": ARCH, "case": "eager", "steps": steps, **_public(base)})
    if ctx.smoke:  # inductor on a CPU takes minutes; tests/fast/test_attention_compile_few_step.py checks compile=True there
        rows.append({"arch": ARCH, "case": "compile=True", "status": "skipped in --smoke"})
        return rows
    gen = ctx.generator(pipe, ARCH, compile=True)
    try:
        for label in ("compile=True, first run", "compile=True, second run"):
            run = _timed_run(g, ctx, gen, steps, shape)
            rows.append({"arch": ARCH, "case": label, "steps": steps, **_public(run),
                         "step_speedup": round(base["s_per_step"] / run["s_per_step"], 3)
                         if base["s_per_step"] and run["s_per_step"] else None})
    except Exception as exc:
        rows.append({"arch": ARCH, "case": "compile=True", "status": f"failed: {type(exc).__name__}: {exc}"[:300]})
    finally:
        gen.close()
        ctx.drop()  # the compiled blocks must not leak into later sections
        torch._dynamo.reset()
    return rows


def section_fast(ctx: Any, g: Any) -> list[dict]:
    """``g`` is the gpu_check module (its helpers and Context)."""
    rows: list[dict] = []
    # the planner's predicted vs measured peaks are gpu_planner.py's section (with step times)
    for part in (cache_rows, attention_rows, compile_rows):
        try:
            rows += part(ctx, g)
        except Exception as exc:  # one part failing must not hide the others
            traceback.print_exc()
            rows.append({"arch": ARCH, "case": part.__name__, "status": f"failed: {type(exc).__name__}: {exc}"[:300]})
            ctx.drop()
    g.print_table("fast path: cache, attention, compile, plan (wan2.1-1.3b)", rows,
                  ["case", "status", "shape", "steps", "s_per_step", "total_s", "reused_steps", "speedup",
                   "step_speedup", "psnr_db", "peak_mb", "predicted_gb", "measured_gb", "measured_over_predicted"])
    return rows
