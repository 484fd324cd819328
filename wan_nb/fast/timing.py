"""Seconds before the run: traced FLOPs turned into time on a card, with an efficiency factor.

A denoising step is one transformer forward per guidance pass (two with classifier-free guidance,
one for the few-step variants' guidance 1): FLOPs / (the card's dense bf16 rate x efficiency).
What the plan's format and offload add to each pass:

* quantized weights are read, cast to bf16 and read again for each layer
  (:data:`QUANT_TRAFFIC`, in bf16-weight sizes): that traffic / the card's memory bandwidth;
* ``group`` offload copies every block in per pass, overlapped with compute on a stream: only
  the part of the copy longer than the compute shows; ``sequential`` copies every module in,
  waiting for each; both copy from pageable memory (:data:`PAGEABLE_SHARE` of the link);
* ``model`` offload moves each component in once per clip.

The VAE runs in float32 (TF32 convolutions). The efficiency (achieved / peak FLOP rate) is
:data:`DEFAULT_EFFICIENCY` until this machine has timed runs of the model on this card: then it is
fitted from them (:func:`fitted_efficiency`) and the plan's basis says so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wan_nb.fast.cards import Card

__all__ = ["DEFAULT_EFFICIENCY", "QUANT_TRAFFIC", "PAGEABLE_SHARE", "StepTime", "step_seconds",
           "fitted_efficiency", "Efficiency"]

# Wan 2.1's README: T2V-1.3B, 480p, 81 frames, 50 steps on one RTX 4090 in "about 4 minutes";
# its traced FLOPs (2 x 283 TFLOP a step + the decode) at the 4090's 165 TFLOP/s take 2.8 min at
# 100 %: ~0.7 with offload. Rounded down to cover cards without Ada's attention kernels.
DEFAULT_EFFICIENCY = 0.6
# Extra memory traffic per quantized weight per pass, in units of its bf16 size: fp8 layerwise
# casting reads 1 B, writes 2 B, the matmul reads 2 B (5 B = 2.5 x 2 B); torchao int8 weight-only
# dequantizes inside its kernel (read 1 B + 2 B written once: 1.5); bitsandbytes nf4 dequantizes
# to a bf16 copy (0.5 + 2 + 2 B: 2.25); GGUF's diffusers layers likewise (~1 B read: 2.5).
QUANT_TRAFFIC: dict[str | None, float] = {None: 0.0, "fp8": 2.5, "int8": 1.5, "nf4": 2.25}
GGUF_TRAFFIC = 2.5
# group offload with low_cpu_mem_usage and accelerate's sequential hooks copy from pageable
# (unpinned) memory: about half the pinned rate.
PAGEABLE_SHARE = 0.5


@dataclass(frozen=True)
class Efficiency:
    value: float
    basis: str


@dataclass(frozen=True)
class StepTime:
    seconds_per_step: float
    clip_seconds: float


def _traffic(quant: str | None) -> float:
    if quant and quant.startswith("gguf"):
        return GGUF_TRAFFIC
    return QUANT_TRAFFIC.get(quant, 0.0)


def step_seconds(card: Card, efficiency: float, *, flops_per_pass: float, passes: int, offload: str,
                 quant: str | None, transformer_bytes: float, quantized_bf16_bytes: float) -> float:
    """Seconds of one denoising step on ``card``."""
    compute = flops_per_pass / (card.bf16_tflops * 1e12 * efficiency)
    compute += _traffic(quant) * quantized_bf16_bytes / (card.bandwidth_gbs * 1e9)
    copy = transformer_bytes / (card.host_link_gbs * PAGEABLE_SHARE * 1e9)
    if offload == "group":
        compute = max(compute, copy)
    elif offload == "sequential":
        compute += copy
    return passes * compute


def clip_seconds(card: Card, efficiency: float, *, steps: int, step: float, bf16_flops: float,
                 fp32_flops: float, offload: str, component_bytes: float) -> float:
    """The whole clip: the steps, the encoders (bf16), the VAE (float32), model offload's moves."""
    other = bf16_flops / (card.bf16_tflops * 1e12 * efficiency) + fp32_flops / (card.tf32_tflops * 1e12 * efficiency)
    if offload == "model":
        other += component_bytes / (card.host_link_gbs * 1e9)
    return steps * step + other


def fitted_efficiency(model: str, card: Card, predict: Any, timings_path: Path | None,
                      this_card: str | None) -> Efficiency:
    """The efficiency fitted from this machine's timed runs of ``model``, when ``card`` is this
    machine's GPU (``this_card``) and there are some; else the default.

    ``predict(height, width, num_frames)`` -> seconds a step takes at efficiency 1 (no offload);
    the timings file (:class:`wan_nb.core.eta.TimingStore`) holds the measured seconds a step per
    model and shape. The fit is the median of predicted / measured."""
    default = Efficiency(DEFAULT_EFFICIENCY, f"efficiency {DEFAULT_EFFICIENCY:g} (default: no timed runs of "
                         f"{model} on this {card.name} yet)")
    if this_card is None or timings_path is None or not timings_path.is_file():
        return default
    from wan_nb.fast.cards import find_card

    try:
        if find_card(this_card).name != card.name.split(" (timed as")[0]:
            return default
        data = json.loads(timings_path.read_text())
    except (ValueError, OSError):
        return default
    ratios = []
    for key, entry in data.items():
        name, _, shape = key.rpartition("|")
        if name != model or "step" not in entry:
            continue
        try:
            height, width, frames = (int(x) for x in shape.split("x"))
        except ValueError:
            continue
        if entry["step"] > 0:
            ratios.append(predict(height, width, frames) / entry["step"])
    if not ratios:
        return default
    ratios.sort()
    value = min(max(ratios[len(ratios) // 2], 0.02), 1.0)
    return Efficiency(value, f"efficiency {value:.2f} fitted from {len(ratios)} timed run shape(s) of "
                      f"{model} on this {card.name}")
