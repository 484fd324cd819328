"""Cache acceleration: speed-up and PSNR of each cache mode against the uncached run, one process.

    .venv/bin/python benchmarks/fast_path.py [--steps 10] [--runs 2] [--quick] [--out FILE.json]

A mid-size random Wan transformer (8 blocks, width 512, ffn 2048) on the tiny model's text
encoder and VAE, at 96x96 x 9 frames, so the transformer is most of the run's time (the
script prints the shares). Every mode runs through ``Generator.generate`` with the same prompt
and seed as the uncached baseline; runs are interleaved (baseline, mode, baseline, mode, ...) and
medians taken. Per mode: denoising seconds, speed-up (baseline / mode, denoise and whole run),
steps that reused work (from the step events), and the PSNR of the decoded frames (the final
latents decoded by the VAE, before MP4 compression) against the baseline's.

``text-kv`` is exact (its PSNR row must read inf): what it saves is the cross-attention's K/V
projections of the 512 text tokens, so its speed-up depends on how many video tokens there are
beside them (here 108: far fewer than a real 480x832x81 run's 32760, which overstates it; the
script prints the token counts).

MagCache needs a ratio curve: its first run measures it (every step computed, reported as
``mag (calibration)``), the timed runs use it.

A LoRA schedule's cost per step (a ramp against a constant weight) comes from
``benchmarks/fast_path_lora.py``. Memory per quantization mode comes from ``benchmarks/fast_path_memory.py`` (``run(quick)``) when
that file exists.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WAN_NB_CACHE", str(ROOT / ".cache" / "bench"))

# (mode, cache_threshold): first-block also at a looser threshold, since a random transformer's
# first-block residual moves more between steps than a trained one's.
MODES = (("first-block", None), ("first-block", 0.3), ("mag", None), ("taylorseer", None), ("faster", None),
         ("pab", None), ("sea", None), ("text-kv", None), ("first-block+text-kv", 0.3))
PROMPT = "a red fox running through snow"
SHAPE = dict(height=96, width=96, num_frames=9, guidance_scale=1.0, fps=8)


def build_pipeline():
    import diffusers
    import torch
    from diffusers import WanTransformer3DModel

    from wan_nb.models import tiny

    parts = tiny.components("tiny")
    torch.manual_seed(1)
    parts["transformer"] = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=8, attention_head_dim=64, in_channels=16, out_channels=16,
        text_dim=32, freq_dim=64, ffn_dim=2048, num_layers=8, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=64).eval()
    pipe = diffusers.WanPipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def video_tokens() -> int:
    """Latent tokens of SHAPE: 8x spatial, 4x temporal VAE, then the transformer's 2x2 patches."""
    frames = (SHAPE["num_frames"] - 1) // 4 + 1
    return frames * (SHAPE["height"] // 16) * (SHAPE["width"] // 16)


def psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def one_run(gen, steps: int, mode: str | None, threshold: float | None = None) -> dict:
    """Generate once; returns timings, reused steps and the decoded frames of the final latents."""
    from wan_nb.models.video_io import decode_latents

    final = {}
    events = []
    off_hook = gen.add_step_hook(lambda task, step, t, latents, pipe: final.update(latents=latents.clone())
                                 if step == steps else None)
    off = gen.subscribe(events.append)
    started = time.perf_counter()
    try:
        result = gen.generate(PROMPT, seed=11, steps=steps, cache=mode, cache_threshold=threshold, progress=False)
    finally:
        off_hook()
    total = time.perf_counter() - started
    gen.bus.drain(timeout=5.0)
    off()
    frames = gen.run_on_worker(lambda pipe: decode_latents(pipe, final["latents"]))
    stage_times: dict[str, float] = {}
    last = None
    for event in events:
        if event.type == "generation_stage":
            now = _seconds(event.timestamp)
            if last is not None:
                stage_times[last[0]] = stage_times.get(last[0], 0.0) + now - last[1]
            last = (event.data["stage"], now)
    reused = sum(1 for e in events if e.type == "detailed_generation_progress" and e.data.get("step_reused"))
    return {"total_s": total, "denoise_s": stage_times.get("generating", math.nan),
            "decode_s": stage_times.get("post_processing", math.nan), "reused": reused, "frames": frames,
            "task_id": result.task_id}


def _seconds(timestamp: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def measure(steps: int, runs: int, modes=MODES) -> list[dict]:
    import torch

    from wan_nb import Generator

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    with tempfile.TemporaryDirectory(prefix="fast_path_") as tmp:
        os.environ["WAN_NB_CACHE"] = str(Path(tmp) / "cache")  # a fresh MagCache curve
        gen = Generator.from_pipeline(build_pipeline(), "fast-path-bench", defaults=dict(SHAPE, steps=steps),
                                      runs_dir=Path(tmp) / "runs", previews=False)
        try:
            one_run(gen, steps, None)  # warm-up: allocations, first-call costs
            baseline_runs: list[dict] = []
            rows: list[dict] = []
            for mode, threshold in modes:
                if mode == "mag":
                    calibration = one_run(gen, steps, "mag")
                    rows.append({"mode": "mag (calibration)", "reused_steps": calibration["reused"],
                                 "denoise_s": round(calibration["denoise_s"], 3)})
                timed = []
                for _ in range(runs):
                    baseline_runs.append(one_run(gen, steps, None))
                    timed.append(one_run(gen, steps, mode, threshold))
                reference = baseline_runs[-1]["frames"]
                base_denoise = statistics.median(r["denoise_s"] for r in baseline_runs[-runs:])
                base_total = statistics.median(r["total_s"] for r in baseline_runs[-runs:])
                denoise = statistics.median(r["denoise_s"] for r in timed)
                total = statistics.median(r["total_s"] for r in timed)
                rows.append({"mode": mode if threshold is None else f"{mode} ({threshold:g})", "reused_steps": timed[-1]["reused"], "steps": steps,
                             "denoise_s": round(denoise, 3), "baseline_denoise_s": round(base_denoise, 3),
                             "speedup_denoise": round(base_denoise / denoise, 2),
                             "speedup_total": round(base_total / total, 2),
                             "psnr_db": round(psnr(timed[-1]["frames"], reference), 1)})
            shares = baseline_runs[-1]
            rows.insert(0, {"mode": "none (baseline)", "steps": steps,
                            "denoise_s": round(statistics.median(r["denoise_s"] for r in baseline_runs), 3),
                            "denoise_share": round(shares["denoise_s"] / shares["total_s"], 2),
                            "decode_share": round(shares["decode_s"] / shares["total_s"], 2),
                            "psnr_db": round(psnr(baseline_runs[0]["frames"], baseline_runs[-1]["frames"]), 1)})
        finally:
            gen.close()
    return rows


def memory_rows(quick: bool) -> list[dict]:
    """fastq's per-quantization memory numbers (benchmarks/fast_path_memory.py), when present."""
    path = Path(__file__).with_name("fast_path_memory.py")
    if not path.is_file():
        return []
    import importlib.util

    spec = importlib.util.spec_from_file_location("fast_path_memory", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.run(quick))


def lora_rows(steps: int, runs: int) -> list[dict]:
    """A LoRA ramp's denoising seconds per step against a constant weight's (benchmarks/fast_path_lora.py)."""
    sys.path.insert(0, str(Path(__file__).parent))
    import fast_path_lora

    return fast_path_lora.run(build_pipeline, SHAPE, steps, max(runs, 2), PROMPT)


def print_table(rows: list[dict]) -> None:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns))


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--runs", type=int, default=2, help="timed runs per mode, each after a baseline run")
    parser.add_argument("--quick", action="store_true", help="8 steps, one run per mode (a smoke check)")
    parser.add_argument("--modes", help="only these rows, comma-separated (e.g. text-kv,sea)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    steps, runs = (8, 1) if args.quick else (args.steps, args.runs)
    modes = MODES if not args.modes else tuple(m for m in MODES if m[0] in args.modes.split(","))
    if not modes:
        parser.error(f"--modes {args.modes}: none of {', '.join(dict.fromkeys(m for m, _ in MODES))}")
    started = time.perf_counter()
    rows = measure(steps, runs, modes)
    print(f"\nFast path: cache, {steps} steps, {SHAPE['width']}x{SHAPE['height']}x{SHAPE['num_frames']}, "
          f"8-block width-512 transformer, {runs} timed run(s) per mode, medians; "
          f"{video_tokens()} video tokens beside 512 text tokens")
    print_table(rows)
    lora = lora_rows(steps, runs)
    print("\nFast path: a LoRA schedule's cost per step (benchmarks/fast_path_lora.py)")
    print_table(lora)
    memory = memory_rows(args.quick)
    if memory:
        print("\nFast path: memory per quantization mode (benchmarks/fast_path_memory.py)")
        print_table(memory)
    print(f"\n({time.perf_counter() - started:.0f} s)")
    if args.out:
        args.out.write_text(json.dumps({"cache": rows, "memory": memory, "lora_schedule": lora}, indent=2))
    return rows


if __name__ == "__main__":
    main()
