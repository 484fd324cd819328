"""The ``quant`` section of gpu_check.py: peak VRAM and seconds per step for every ``quant=`` mode.

Wan 2.1 T2V 1.3B at its released size, random weights built in code (gpu_check's
``build_pipeline``), saved once as a diffusers folder and once as city96-layout GGUF files (Q8_0,
Q4_0, written with the ``gguf`` package from the same transformer), then loaded through
``Generator(model=<folder>, quant=...)``: the path users take. Per mode, one run loads the model
and warms up, a second is measured:

* ``bf16`` (no quant), ``fp8`` (layerwise casting), ``int8`` (torchao), ``nf4`` (bitsandbytes),
  ``gguf-Q8_0``, ``gguf-Q4_0``: the transformer only, so the rows compare the transformer;
* ``fp8 all``: ``quant="fp8"`` as users write it (transformer and UMT5 text encoder);
* ``fp8 + model offload`` and ``gguf-Q4_0 + model offload``: the 8-12 GB card recipes.

Figures: peak VRAM over the measured run (torch ``max_memory_allocated``: with offload "none" the
weights of every component plus the activations), VRAM held after loading (the weights), seconds
per denoising step (median, step hook with a device sync), load time, stored bytes of the
transformer and text encoder (``wan_nb.weights.quant.stored_dtypes``), and the relative error of the
noise prediction against bf16 on fixed inputs. ``GPU_QUANT_MODES=bf16,fp8`` limits the rows.

Smoke (``--smoke``): gpu_check's toy architecture on the CPU; nf4 is a "skipped" row there.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

SHAPE = dict(height=256, width=448, num_frames=17)
SMOKE_SHAPE = dict(height=64, width=64, num_frames=9)
STEPS = 3
CASES = ("bf16", "fp8", "int8", "nf4", "gguf-Q8_0", "gguf-Q4_0", "fp8 all", "fp8 + model offload",
         "gguf-Q4_0 + model offload")
COLUMNS = ["case", "status", "load_s", "s_per_step", "weights_mb", "peak_mb", "peak_vs_bf16", "transformer_mb",
           "text_encoder_mb", "rel_error", "note"]


def _cases() -> list[str]:
    chosen = os.environ.get("GPU_QUANT_MODES")
    if not chosen:
        return list(CASES)
    wanted = [c.strip() for c in chosen.split(",") if c.strip()]
    return [c for c in CASES if c in wanted]


def _quant_for(case: str, files: dict[str, Path]) -> Any:
    mode = case.split(" ")[0]
    if case == "fp8 all":
        return "fp8"
    if mode == "bf16":
        return None
    if mode.startswith("gguf-"):
        return {"transformer": f"gguf:{files[mode[5:]]}"}
    return {"transformer": mode}


def _prediction(transformer: Any, device: str, dtype: Any) -> Any:
    import torch

    gen = torch.Generator().manual_seed(1)
    config = transformer.config
    latents = torch.randn(1, config.in_channels, 3, 16, 16, generator=gen).to(device, dtype)
    text = torch.randn(1, 64, config.text_dim, generator=gen).to(device, dtype)
    with torch.no_grad():
        return transformer(latents, torch.tensor([700], device=device), text, return_dict=False)[0].float().cpu()


def _prepare(ctx: Any, g: Any, folder: Path) -> dict[str, Path]:
    from wan_nb.weights import gguf as gguf_files
    from wan_nb.weights.single_file import original_state_dict

    pipe, params = g.build_pipeline(g.arch("wan2.1-1.3b", ctx.smoke), ctx.device, ctx.dtype)
    ctx.params["wan2.1-1.3b"] = params
    pipe.save_pretrained(folder)
    state = original_state_dict(pipe.transformer)
    del pipe
    g.free_memory()
    files = {qtype: gguf_files.write(state, folder.parent / f"wan2.1-1.3b-random-{qtype}.gguf", qtype=qtype)
             for qtype in ("Q8_0", "Q4_0")}
    del state
    return files


def section_quant(ctx: Any, g: Any) -> list[dict]:
    import torch

    from wan_nb import Generator
    from wan_nb.weights import quant

    ctx.drop()
    folder = ctx.tmp / "quant" / "wan2.1-t2v-1.3b-random"
    started = time.perf_counter()
    files = _prepare(ctx, g, folder)
    print(f"  saved the folder and GGUF files in {time.perf_counter() - started:.1f} s", flush=True)
    shape = dict(SMOKE_SHAPE if ctx.smoke else SHAPE)
    steps = 2 if ctx.smoke else STEPS
    rows: list[dict] = []
    reference = None
    for case in _cases():
        row: dict[str, Any] = {"case": case}
        rows.append(row)
        if case.startswith("nf4") and not torch.cuda.is_available():
            row["status"] = "skipped: needs a CUDA GPU"
            continue
        gen = None
        try:
            offload = "model" if "model offload" in case else "none"
            gen = Generator(model=str(folder), device=ctx.device, dtype=ctx.dtype, runs_dir=ctx.tmp / "runs",
                            previews=False, offload=offload, quant=_quant_for(case, files))
            loaded = time.perf_counter()
            g.run_task(gen, ctx.budget_s, **shape, steps=1, seed=0)   # load + first-call costs
            row["load_s"] = round(time.perf_counter() - loaded, 1)
            row["weights_mb"] = _allocated_mb()  # what the loaded weights hold on the device
            clock = g.StepClock()
            off = gen.add_step_hook(clock)
            g.reset_peak()
            task, status = g.run_task(gen, ctx.budget_s, **shape, steps=steps, seed=0)
            off()
            step_s = clock.step_seconds()
            pipe = gen.pipeline
            row.update(status=status, s_per_step=g._median(step_s) if step_s else None, peak_mb=g.peak_mb(),
                       transformer_mb=round(sum(quant.stored_dtypes(pipe.transformer).values()) / 2**20, 1),
                       text_encoder_mb=round(sum(quant.stored_dtypes(pipe.text_encoder).values()) / 2**20, 1),
                       note=", ".join(f"{k} {v}" for k, v in gen.weights.modes.items()) or "no quant")
            if offload == "none":
                prediction = _prediction(pipe.transformer, ctx.device, ctx.dtype)
                if case == "bf16":
                    reference = prediction
                if reference is not None:
                    row["rel_error"] = round(float((prediction - reference).norm() / reference.norm()), 4)
        except Exception as exc:  # one mode failing must not hide the others
            import traceback

            traceback.print_exc()
            row["status"] = f"failed: {type(exc).__name__}: {exc}"[:300]
        finally:
            if gen is not None:
                gen.close()
            del gen
            g.free_memory()
        print(f"  {case}: {row.get('status')}, peak {row.get('peak_mb')} MB, {row.get('s_per_step')} s/step", flush=True)
    base = next((r for r in rows if r["case"] == "bf16" and r.get("peak_mb")), None)
    for row in rows:
        if base and row.get("peak_mb"):
            row["peak_vs_bf16"] = round(row["peak_mb"] / base["peak_mb"], 3)
    g.print_table(f"quant: wan2.1-1.3b random weights, {'x'.join(map(str, shape.values()))}, {steps} steps, "
                  "peak = torch max_memory_allocated over the measured run", rows, COLUMNS)
    return rows


def _allocated_mb() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    torch.cuda.synchronize()
    return round(torch.cuda.memory_allocated() / 2**20, 1)
