"""The ``real`` section of gpu_check.py: what a user meets on the first GPU run, end to end.

Every preset architecture (Wan 2.1 1.3B, 14B and I2V 14B, Wan 2.2 TI2V-5B and A14B) at its
released shape, random weights built in code, run through ``wan_nb.Generator`` at a reduced but
real-shaped size (256x448, 17 frames, 2 steps; A14B 4 steps so the expert switch shows):

* Wan 2.1 1.3B is saved to disk and loaded back through the loader (``Generator(model=<folder>)``):
  ``offload="none"`` (each component to the GPU as it is loaded) and ``offload="model"`` (the
  decode after the pipeline call put the VAE back on the CPU: the first-run crash of the first
  version), then a run cancelled after step 1 (memory handed back?) and one more (peak unchanged?);
  ``sequential``, ``group`` and VAE tiling on pipelines built in code (``Generator.from_pipeline``
  applies the same ``loading.place``);
* Wan 2.2 TI2V-5B: text-to-video, image-to-video through its twin pipeline, ``model`` + tiling;
* Wan 2.1 14B: ``model`` and ``group`` (host RSS shows what group offload pins);
* Wan 2.1 I2V 14B: image-to-video with the CLIP image encoder;
* Wan 2.2 A14B: both experts on the GPU, the switch seen in the events, a LoRA on both experts.

One row per run, one table. Anything that fails here is a first-run failure for users.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

SHAPE = dict(height=256, width=448, num_frames=17)
SMOKE_SHAPE = dict(height=64, width=64, num_frames=9)
COLUMNS = ["arch", "case", "offload", "vae_tiling", "status", "run_s", "s_per_step", "peak_mb", "peak_reserved_mb",
           "after_mb", "host_rss_mb", "note"]


def _rss_mb() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return round(psutil.Process().memory_info().rss / 2**20, 1)


def _allocated_mb() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    return round(torch.cuda.memory_allocated() / 2**20, 1)


class Runner:
    """Runs one case on a Generator and turns it into a row."""

    def __init__(self, ctx: Any, g: Any, arch_name: str) -> None:
        self.ctx, self.g, self.arch_name = ctx, g, arch_name
        self.shape = dict(SMOKE_SHAPE if ctx.smoke else SHAPE)
        self.steps = 2
        self.rows: list[dict] = []

    def generator(self, *, pipe: Any = None, folder: Path | None = None, **options: Any) -> Any:
        from wan_nb import Generator

        a = self.g.arch(self.arch_name, self.ctx.smoke)
        defaults = dict(a.shape, **self.shape, steps=self.steps, flow_shift=a.flow_shift)
        options.setdefault("previews", False)
        runs = self.ctx.tmp / "runs"
        if folder is not None:
            return Generator(model=str(folder), device=self.ctx.device, dtype=self.ctx.dtype, runs_dir=runs, **options)
        return Generator.from_pipeline(pipe, a.name, defaults=defaults, runs_dir=runs, **options)

    def run(self, gen: Any, case: str, *, cancel_after: int | None = None, note: str = "", **kwargs: Any) -> dict:
        clock = self.g.StepClock()
        off_clock = gen.add_step_hook(clock)
        off_cancel = None
        if cancel_after is not None:
            def cancel(task, step, *rest):
                if step >= cancel_after:
                    task.cancel()
            off_cancel = gen.add_step_hook(cancel)
        args = dict(self.shape, steps=self.steps, seed=0)
        args.update(kwargs)
        self.g.reset_peak()
        started = time.perf_counter()
        try:
            task, status = self.g.run_task(gen, self.ctx.budget_s, **args)
            if task.status == "failed":
                status = f"failed: {task._error}"[:300]
            elif task.status == "cancelled" and cancel_after is not None:
                status = f"cancelled after step {task.current_step}"
        finally:
            off_clock()
            if off_cancel is not None:
                off_cancel()
        elapsed = time.perf_counter() - started
        steps = clock.step_seconds()
        events = task.events
        experts = [e.data["expert"] for e in events
                   if e.type == "detailed_generation_progress" and e.data.get("expert")]
        if experts:
            switches = [e.data["message"] for e in events if "Switched" in str(e.data.get("message", ""))]
            note = (note + "; " if note else "") + f"experts {'>'.join(dict.fromkeys(experts))}" + (
                f" ({switches[0]})" if switches else "")
        row = {"arch": self.arch_name, "case": case, "offload": gen.offload, "vae_tiling": gen.vae_tiling,
               "status": status, "run_s": round(elapsed, 2),
               "s_per_step": round(sum(steps) / len(steps), 3) if steps else None,
               "peak_mb": self.g.peak_mb(), "peak_reserved_mb": self.g.peak_mb(reserved=True),
               "after_mb": _allocated_mb(), "host_rss_mb": _rss_mb(), "note": note}
        print(f"  {self.arch_name} {case}: {status} in {elapsed:.1f} s, peak {row['peak_mb']} MB, "
              f"after {row['after_mb']} MB", flush=True)
        self.rows.append(row)
        return row

    def fresh(self, on_device: bool = True) -> Any:
        """A newly built pipeline (its weights on the GPU, or moved to host memory for offload)."""
        self.g.free_memory()
        pipe, params = self.g.build_pipeline(self.g.arch(self.arch_name, self.ctx.smoke), self.ctx.device, self.ctx.dtype)
        self.ctx.params[self.arch_name] = params
        if not on_device:
            pipe.to("cpu")
            self.g.free_memory()
        return pipe

    def case(self, label: str, fn) -> None:
        """Run ``fn()``; an exception becomes a failed row and the next case still runs."""
        try:
            fn()
        except Exception as exc:  # a first-run failure: recorded, not fatal to the check
            import traceback

            traceback.print_exc()
            self.rows.append({"arch": self.arch_name, "case": label, "status": f"failed: {type(exc).__name__}: "
                              f"{exc}"[:300]})
        finally:
            self.g.free_memory()


def _picture(shape: dict) -> Any:
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(shape["height"], shape["width"], 3), dtype=np.uint8)


def _close(gen: Any) -> None:
    gen.close()
    del gen


def wan21_small(r: Runner) -> None:
    folder = r.ctx.tmp / "wan2.1-t2v-1.3b-random"

    def save() -> None:
        started = time.perf_counter()
        pipe = r.fresh()
        pipe.save_pretrained(folder)
        del pipe
        r.rows.append({"arch": r.arch_name, "case": "save for the loader", "status": "completed",
                       "run_s": round(time.perf_counter() - started, 2),
                       "note": f"{sum(p.stat().st_size for p in folder.rglob('*') if p.is_file()) / 1e9:.1f} GB"})

    def loader_none() -> None:
        gen = r.generator(folder=folder, offload="none")
        r.run(gen, "loader", note="each component placed as loaded")
        _close(gen)

    def loader_model() -> None:
        gen = r.generator(folder=folder, offload="model")
        first = r.run(gen, "loader")
        cancelled = r.run(gen, "cancel", cancel_after=1)
        again = r.run(gen, "after cancel")
        if first.get("peak_mb") and again.get("peak_mb"):
            again["note"] = (f"peak {again['peak_mb'] / first['peak_mb']:.3f}x the first run; "
                             f"{cancelled['after_mb']} MB held after the cancel")
        _close(gen)

    def offload(mode: str, tiling: bool = False):
        def go() -> None:
            gen = r.generator(pipe=r.fresh(on_device=mode == "none"), offload=mode, vae_tiling=tiling)
            r.run(gen, f"{mode}{' + tiling' if tiling else ''}")
            _close(gen)
        return go

    r.case("save", save)
    r.case("loader none", loader_none)
    r.case("loader model", loader_model)
    for mode in ("sequential", "group"):
        r.case(mode, offload(mode))
    r.case("tiling", offload("none", tiling=True))


def wan22_5b(r: Runner) -> None:
    def none_and_image() -> None:
        gen = r.generator(pipe=r.fresh())
        r.run(gen, "text")
        r.run(gen, "image", image=_picture(r.shape), note="TI2V twin pipeline")
        _close(gen)

    def model_tiling() -> None:
        gen = r.generator(pipe=r.fresh(on_device=False), offload="model", vae_tiling=True)
        r.run(gen, "image + tiling", image=_picture(r.shape))
        _close(gen)

    r.case("none", none_and_image)
    r.case("model", model_tiling)


def wan21_14b(r: Runner) -> None:
    for mode in ("model", "group"):
        def go(mode=mode) -> None:
            gen = r.generator(pipe=r.fresh(on_device=False), offload=mode)
            r.run(gen, mode, note="host RSS: what the offload keeps in RAM")
            _close(gen)
        r.case(mode, go)


def wan21_i2v(r: Runner) -> None:
    def go() -> None:
        gen = r.generator(pipe=r.fresh())
        r.run(gen, "image", image=_picture(r.shape), note="CLIP image encoder (fp32)")
        _close(gen)

    r.case("image", go)


def wan22_a14b(r: Runner) -> None:
    r.steps = 4

    def go() -> None:
        from wan_nb.models import lora_files as lora
        from wan_nb.models import tiny

        pipe = r.fresh()
        gen = r.generator(pipe=pipe)
        r.run(gen, "two experts")
        path = tiny.make_lora(pipe.transformer, r.ctx.tmp / "style.safetensors", seed=3, scale=0.1)
        gen.load_lora(path, name="style")
        placed = lora.per_component(pipe)
        r.run(gen, "LoRA on both experts", note=f"adapters {placed}")
        _close(gen)

    r.case("a14b", go)


PLAN = {"wan2.1-1.3b": wan21_small, "wan2.2-5b": wan22_5b, "wan2.1-14b": wan21_14b,
        "wan2.1-i2v-14b": wan21_i2v, "wan2.2-a14b": wan22_a14b}


def section_real(ctx: Any, g: Any) -> list[dict]:
    rows: list[dict] = []
    ctx.drop()
    for arch_name, plan in PLAN.items():
        runner = Runner(ctx, g, arch_name)
        print(f"  -- {arch_name}", flush=True)
        plan(runner)
        rows += runner.rows
        g.free_memory()
    g.print_table(f"real: every preset architecture through Generator, {'x'.join(map(str, (SMOKE_SHAPE if ctx.smoke else SHAPE).values()))}",
                  rows, COLUMNS)
    return rows
