"""The cost of a LoRA schedule per step: a ramp against a constant weight, same process, same model.

Loaded by ``benchmarks/fast_path.py`` (``run(build_pipeline, shape, steps, runs)``), or alone:

    .venv/bin/python benchmarks/fast_path_lora.py [--steps 10] [--runs 3]

Runs alternate (constant 1.0, ramp "1.0-0.0", ...) on fast_path's mid-size transformer with a
rank-16 LoRA on every attention and feed-forward layer; medians of the denoising seconds per step.
A schedule writes each LoRA layer's scale (a 0-d tensor, filled in place) once per step, so
``set_scales_ms`` (one such write over all the layers) is the whole of its extra work.
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _denoise_per_step(gen, prompt: str, steps: int, weight) -> float:
    stages = []
    off = gen.subscribe(lambda e: stages.append((e.data["stage"], time.perf_counter())) if e.type == "generation_stage" else None)
    gen.generate(prompt, seed=11, steps=steps, loras={"style": weight}, progress=False)
    gen.bus.drain(timeout=5.0)
    off()
    start = next(t for s, t in stages if s == "generating")
    end = next(t for s, t in stages if s == "post_processing")
    return (end - start) / steps


def run(build_pipeline, shape: dict, steps: int = 10, runs: int = 3, prompt: str = "a red fox") -> list[dict]:
    import torch

    from wan_nb import Generator
    from wan_nb.models import lora_files, tiny

    with tempfile.TemporaryDirectory(prefix="fast_path_lora_") as tmp:
        pipe = build_pipeline()
        path = tiny.make_lora(pipe.transformer, Path(tmp) / "style.safetensors", seed=1, rank=16)
        gen = Generator.from_pipeline(pipe, "fast-path-lora-bench", defaults=dict(shape, steps=steps),
                                      runs_dir=Path(tmp) / "runs", previews=False)
        try:
            gen.load_lora(path, name="style")
            _denoise_per_step(gen, prompt, steps, 1.0)  # warm-up
            constant, ramp = [], []
            for _ in range(runs):
                constant.append(_denoise_per_step(gen, prompt, steps, 1.0))
                ramp.append(_denoise_per_step(gen, prompt, steps, "1.0-0.0"))

            def set_scales_ms(pipe) -> tuple[float, int]:
                layers = sum(1 for m in pipe.transformer.modules() if hasattr(m, "scaling") and "style" in m.scaling)
                started = time.perf_counter()
                for i in range(50):
                    lora_files.set_scales(pipe, {"transformer": {"style": i / 50}})
                return (time.perf_counter() - started) / 50 * 1000, layers

            write_ms, layers = gen.run_on_worker(set_scales_ms)
        finally:
            gen.close()
    base, scheduled = statistics.median(constant), statistics.median(ramp)
    return [{"lora": "constant 1.0", "steps": steps, "s_per_step": round(base, 4)},
            {"lora": "ramp 1.0-0.0", "steps": steps, "s_per_step": round(scheduled, 4),
             "ratio_vs_constant": round(scheduled / base, 3), "set_scales_ms": round(write_ms, 3),
             "lora_layers": layers, "threads": torch.get_num_threads()}]


if __name__ == "__main__":
    import argparse

    import fast_path

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    fast_path.print_table(run(fast_path.build_pipeline, fast_path.SHAPE, args.steps, args.runs, fast_path.PROMPT))
