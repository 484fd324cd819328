"""A plan as text: the component table, one line per offload x format, the pick, the basis."""

from __future__ import annotations

import textwrap
from typing import Any

__all__ = ["BASIS", "render"]

BASIS = (
    "Basis: weights = exact parameter counts from the real configs on the meta device x bytes per "
    "format (fp8 as wan_nb's casting stores it; int8/nf4/GGUF quantize the Linear weights; VAE and CLIP "
    "fp32). Activations = the peak traced by running the real diffusers/transformers modules under "
    "FakeTensorMode at this shape (one transformer pass, one 512-token prompt, the VAE encode/decode, "
    "tiled or not), plus one dequantized layer for quantized formats. Offload: none = every component "
    "on the GPU; model = one component at a time; group = outside the blocks + two blocks (VAE whole); "
    "sequential = two of the largest module. Host RAM: 3 GB + the largest component without offload, "
    "all with. Fits: peak <= (card - 1 GB CUDA context and workspaces) x 0.95 (allocator) and RAM <= 85 %. "
    "Time: traced FLOPs / the card's dense bf16 (VAE: TF32) rate x efficiency, + quantized weights' "
    "cast traffic / bandwidth, + offload copies over the host link.")


def _fmt_quant(q: str | None) -> str:
    return "bf16" if q is None else q


def _table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows])


def render(plan: Any) -> str:
    from wan_nb.fast.quant_bytes import PLANNED_QUANTS, component_bytes

    s = plan.shape
    segment = " (one segment)" if plan.per_segment else ""
    card = plan.gpu_name.split("(", 1)[1].rstrip(")") if "(" in plan.gpu_name else plan.gpu_name
    lines = [f"Memory plan for {plan.model} at {s['width']}x{s['height']}, {s['num_frames']} frames{segment}, "
             f"on a {plan.gpu_gb:g} GB GPU with {plan.ram_gb:g} GB RAM ({card}), {plan.steps} steps", "",
             _table(["component", "parameters", *(_fmt_quant(q) for q in PLANNED_QUANTS)],
                    [[c.name, f"{c.params / 1e9:.3f} B",
                      *(f"{component_bytes(c, q) / 1e9:.2f} GB" for q in PLANNED_QUANTS)]
                     for c in plan.components]), ""]
    best = plan.best
    rows = sorted(plan.rows, key=lambda r: (not r.fits, r.speed))
    lines.append(_table(["", "offload", "quant", "peak VRAM", "peak RAM", "vae_tiling", "fits", "s/step",
                         "min/clip", "note"],
                        [["->" if r is best else "", r.offload, _fmt_quant(r.quant), f"{r.vram_gb:.1f} GB",
                          f"{r.ram_gb:.1f} GB", "yes" if r.vae_tiling else "no", "yes" if r.fits else "no",
                          f"{r.seconds_per_step:.1f}", f"{r.minutes_per_clip:.1f}", r.note] for r in rows]))
    lines.append("")
    if best is None:
        lines.append("Nothing fits: lower height/width/num_frames, or use a smaller model.")
    else:
        quant = plan.quant_argument(best)
        lines.append(f"Best: offload={best.offload!r}, quant={quant!r}, vae_tiling={best.vae_tiling} "
                     f"(Generator(..., plan='auto') applies it)")
    lines += ["", *textwrap.wrap(plan.basis, 100)]
    return "\n".join(lines)
