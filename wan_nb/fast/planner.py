"""The planner: will a model fit a GPU, with which offload and quantization, and how long will it take.

``wan_nb.plan("wan2.1-t2v-14b", gpu="RTX 4090", ram_gb=64)`` (or ``gpu_gb=24``) counts each
component's parameters exactly (real configs on the meta device, :mod:`wan_nb.fast.planner_counts`),
traces every part the pipeline runs at the requested shape under ``FakeTensorMode``
(:mod:`wan_nb.fast.tracing`, cached), derives each offload mode's peak from what it keeps on the
device while each part runs (:mod:`wan_nb.fast.offload_peaks`), prices the CUDA-only costs
(:mod:`wan_nb.fast.cards`), turns the traced FLOPs into seconds on the card
(:mod:`wan_nb.fast.timing`), and picks the fastest choice that fits and that this machine can run.
``Generator(..., plan="auto")`` applies it; ``wan-nb plan MODEL --json`` prints :meth:`Plan.to_json`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from wan_nb.fast.cards import CONTEXT_GB, HEADROOM, Card, card_for_memory, find_card
from wan_nb.fast.offload_peaks import OFFLOADS, GB, PlacedPart, host_bytes, peak_device_bytes
from wan_nb.fast.plan_parts import PartTraces, placed_parts, trace_plan_parts, needs_for
from wan_nb.fast.planner_counts import ComponentCount
from wan_nb.fast.plan_text import BASIS, render
from wan_nb.fast.quant_bytes import PLANNED_QUANTS, QUANT_BYTES, component_bytes

__all__ = ["Plan", "PlanRow", "plan", "QUANT_BYTES", "BASIS", "GB", "OFFLOADS", "PLANNED_QUANTS",
           "component_bytes", "CONTEXT_GB", "HEADROOM"]

RAM_SHARE = 0.85


@dataclass(frozen=True)
class PlanRow:
    offload: str
    quant: str | None
    vram_gb: float
    ram_gb: float
    vae_tiling: bool
    fits: bool
    speed: float            # time per step relative to bf16 on the GPU without offload (1.0)
    weights_gb: float       # all weights in this format
    note: str = ""
    seconds_per_step: float = 0.0
    minutes_per_clip: float = 0.0
    parts: dict[str, dict[str, float]] = field(default_factory=dict)
    needs: str = ""         # what this machine lacks to run it ("" = nothing)

    @property
    def applicable(self) -> bool:
        """Generator(plan="auto") can apply it here: no file the user must supply, nothing missing."""
        return (self.quant is None or not self.quant.startswith("gguf:")) and not self.needs


@dataclass
class Plan:
    model: str
    gpu_gb: float
    ram_gb: float
    shape: dict[str, int]
    components: list[ComponentCount]
    rows: list[PlanRow] = field(default_factory=list)
    gpu_name: str = ""
    basis: str = BASIS
    steps: int = 0
    per_segment: bool = False

    @property
    def best(self) -> PlanRow | None:
        """The fastest row that fits and that this machine can apply, ties to the better format."""
        order = {q: i for i, q in enumerate(PLANNED_QUANTS)}
        fitting = [r for r in self.rows if r.fits and r.applicable]
        return min(fitting, key=lambda r: (r.speed, order.get(r.quant, 99)), default=None)

    def quant_argument(self, row: PlanRow | None = None) -> dict[str, str] | None:
        """``Generator(quant=...)`` for ``row`` (default: the best): its format on every transformer
        and the text encoder, the VAE and CLIP left as they are."""
        row = row or self.best
        if row is None or row.quant is None:
            return None
        return {c.name: row.quant for c in self.components if c.kind in ("transformer", "umt5")}

    def estimated_seconds(self, steps: int | None = None) -> float | None:
        """Seconds a clip should take with the best plan (``steps`` overrides the preset's)."""
        best = self.best
        if best is None:
            return None
        clip = best.minutes_per_clip * 60
        if steps is not None and self.steps:
            clip += (steps - self.steps) * best.seconds_per_step
        return _sig(max(clip, 0.0))

    def to_json(self) -> dict[str, Any]:
        """The ``wan-nb plan --json`` object (GB = 10^9 bytes)."""
        best = self.best
        return {"model": self.model, "shape": dict(self.shape),
                "gpu": {"name": self.gpu_name, "memory_gb": self.gpu_gb},
                "plans": [{"offload": r.offload, "quant": r.quant, "vae_tiling": r.vae_tiling, "fits": r.fits,
                           "peak_vram_gb": r.vram_gb, "host_ram_gb": r.ram_gb,
                           "seconds_per_step": r.seconds_per_step, "minutes_per_clip": r.minutes_per_clip,
                           "basis": self.basis + (f" Needs: {r.needs}." if r.needs else ""),
                           "parts": r.parts} for r in self.rows],
                "best": next((i for i, r in enumerate(self.rows) if r is best), None)}

    def __str__(self) -> str:
        return render(self)

    def __repr__(self) -> str:
        best = self.best
        return (f"Plan({self.model!r}, gpu_gb={self.gpu_gb:g}, ram_gb={self.ram_gb:g}, best="
                f"{(best.offload, best.quant) if best else None})")

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # IPython shows the table
        printer.text(str(self))


def _sig(value: float) -> float:
    """Four significant digits (a tiny model's step is microseconds; a 14B's clip an hour)."""
    return float(f"{value:.4g}")


def _check_memory(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name}={value!r}: give the memory in GB as a positive number, e.g. {name}=24")


def _card(gpu: str | None, gpu_gb: float | None) -> Card:
    if gpu is not None:
        card = find_card(gpu)
        if gpu_gb is not None and gpu_gb != card.memory_gb:
            from dataclasses import replace

            card = replace(card, memory_gb=float(gpu_gb))
        return card
    return card_for_memory(24.0 if gpu_gb is None else gpu_gb)


def _row(offload: str, quant: str | None, traces: PartTraces, card: Card, usable: float, ram_gb: float,
         efficiency: float, baseline: float) -> PlanRow:
    parts: list[PlacedPart] = placed_parts(traces, quant, tiled=False)
    vram, tiling = peak_device_bytes(offload, parts), False
    if vram > usable:
        tiled_parts = placed_parts(traces, quant, tiled=True)
        tiled = peak_device_bytes(offload, tiled_parts)
        if tiled < vram:
            parts, vram, tiling = tiled_parts, tiled, True
    ram = host_bytes(offload, parts)
    step = traces.step_seconds(card, efficiency, offload, quant)
    clip = traces.clip_seconds(card, efficiency, offload, quant, step)
    needs = needs_for(quant)
    note = "needs a .gguf file (quant='gguf:<file>')" if quant and quant.startswith("gguf:") else ""
    if needs:
        note = f"needs {needs}"
    if ram > ram_gb * GB * RAM_SHARE:
        note = (note + "; " if note else "") + "not enough RAM"
    return PlanRow(offload=offload, quant=quant, vram_gb=round(vram / GB, 2), ram_gb=round(ram / GB, 2),
                   vae_tiling=tiling, fits=vram <= usable and ram <= ram_gb * GB * RAM_SHARE,
                   speed=round(step / baseline, 3), weights_gb=round(traces.all_weights(quant) / GB, 2), note=note,
                   seconds_per_step=_sig(step), minutes_per_clip=_sig(clip / 60),
                   parts={p.part: {"weights_gb": round(p.weights / GB, 6), "activations_gb": round(p.activations / GB, 6)}
                          for p in parts}, needs=needs)


def plan(model: str, gpu_gb: float | None = None, ram_gb: float = 64, *, gpu: str | None = None,
         height: int | None = None, width: int | None = None, num_frames: int | None = None,
         this_gpu: str | None = None) -> Plan:
    """Every offload x quant choice for ``model`` on a card (``gpu`` by name, or ``gpu_gb`` of
    memory; default 24 GB) with ``ram_gb`` of host RAM. ``this_gpu``: the name of this machine's
    GPU, whose timed runs fit the efficiency when it is the card planned for."""
    if gpu_gb is not None:
        _check_memory("gpu_gb", gpu_gb)
    _check_memory("ram_gb", ram_gb)
    card = _card(gpu, gpu_gb)
    traces = trace_plan_parts(model, card, height=height, width=width, num_frames=num_frames)
    efficiency = traces.efficiency(card, this_gpu)
    usable = max(card.memory_gb - CONTEXT_GB, 0.0) * HEADROOM * GB
    result = Plan(model=traces.name, gpu_gb=float(card.memory_gb), ram_gb=float(ram_gb), shape=traces.shape,
                  components=traces.components, gpu_name=card.name, steps=traces.steps,
                  per_segment=traces.pipeline_kind == "animate",
                  basis=f"{BASIS} Efficiency: {efficiency.basis}.")
    baseline = traces.step_seconds(card, efficiency.value, "none", None)
    for offload in OFFLOADS:
        for quant in PLANNED_QUANTS:
            result.rows.append(_row(offload, quant, traces, card, usable, ram_gb, efficiency.value, baseline))
    return result

