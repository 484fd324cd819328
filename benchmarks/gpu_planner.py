"""The ``planner`` section of gpu_check.py: the planner's predictions next to a real GPU run.

For offload none | model | group | sequential, the Wan 2.1 1.3B at its real size with random
weights, 480x832, 33 frames, 3 steps, guidance 5 (two passes a step): the plan's peak VRAM and
seconds per step (``wan_nb.plan(..., gpu=<this card>)``) beside the measured peak
(``torch.cuda.max_memory_allocated`` over the run) and the measured mean step (from the step
events' timestamps, the first step left out: it includes warm-up). Ratios measured / predicted
calibrate ``wan_nb.fast.cards`` (context, fragmentation) and ``wan_nb.fast.timing``
(efficiency) on the first lent GPU. ``--smoke`` runs it on the CPU at the toy size.
"""
from __future__ import annotations

import traceback
from datetime import datetime
from typing import Any

ARCH = "wan2.1-1.3b"
PRESET = "wan2.1-t2v-1.3b"
STEPS = 3


def _step_seconds(events: list[Any]) -> float | None:
    """Mean seconds between step events after the first step."""
    times = {}
    for e in events:
        step = e.data.get("current_step")
        if e.type == "detailed_generation_progress" and step and step not in times:
            times[step] = datetime.fromisoformat(e.timestamp.replace("Z", "+00:00")).timestamp()
    ordered = [times[s] for s in sorted(times)]
    gaps = [b - a for a, b in zip(ordered[1:], ordered[2:])] or [b - a for a, b in zip(ordered, ordered[1:])]
    return round(sum(gaps) / len(gaps), 3) if gaps else None


def section(ctx: Any, g: Any) -> list[dict]:
    from wan_nb.fast.cards import find_card
    from wan_nb.fast.planner import plan
    from wan_nb.models import loading

    a = g.arch(ARCH, ctx.smoke)
    shape = {k: a.shape[k] for k in ("height", "width", "num_frames")}
    card = None
    if g.cuda():
        import torch

        try:
            card = find_card(torch.cuda.get_device_name(0)).name
        except ValueError:
            card = None
    card_gb = (g.nvidia_smi() or {}).get("total_mb", 0) / 1024 if g.cuda() else 80.0
    found = plan(PRESET, gpu=card, gpu_gb=None if card else card_gb or 80.0, ram_gb=1024, **shape)
    predicted = {r.offload: r for r in found.rows if r.quant is None}
    rows = []
    for mode in ("none", "model", "group", "sequential"):
        ctx.drop()
        p = predicted[mode]
        row: dict[str, Any] = {"arch": ARCH, "case": f"planner offload={mode}", "card": found.gpu_name,
                               "shape": f"{shape['width']}x{shape['height']}x{shape['num_frames']}",
                               "predicted_gb": p.vram_gb, "predicted_s_step": p.seconds_per_step}
        gen = None
        try:
            pipe, _ = g.build_pipeline(a, ctx.device, ctx.dtype)
            if mode != "none":
                pipe.to("cpu")
                g.free_memory()
            loading.place(pipe, device=ctx.device, offload=mode, vae_tiling=p.vae_tiling)
            gen = ctx.generator(pipe, ARCH)
            events: list[Any] = []
            off = gen.subscribe(events.append)
            g.reset_peak()
            task, status = g.run_task(gen, ctx.budget_s * (3 if mode == "sequential" else 1), steps=STEPS,
                                      guidance_scale=5.0)
            off()
            peak = g.peak_mb()
            row.update(status=status, measured_gb=None if peak is None else round(peak * 1024 * 1024 / 1e9, 2),
                       measured_s_step=_step_seconds(events))
            if row["measured_gb"]:
                row["peak_measured_over_predicted"] = round(row["measured_gb"] / p.vram_gb, 3)
            if row["measured_s_step"]:
                row["step_measured_over_predicted"] = round(row["measured_s_step"] / p.seconds_per_step, 3)
        except Exception as exc:
            traceback.print_exc()
            row["status"] = f"failed: {type(exc).__name__}: {exc}"[:300]
        finally:
            if gen is not None:
                gen.close()
            ctx.drop()
        rows.append(row)
    g.print_table(f"planner: predicted vs measured ({found.gpu_name})", rows)
    return rows
