"""Each offload mode's peak device memory, from what it keeps on the device while each part runs.

A part (:mod:`wan_nb.fast.tracing`) brings its traced activations; what sits beside them depends
on the mode (as :func:`wan_nb.models.loading.place` sets it up):

* ``none``: every component on the device the whole run: all weights + the largest activations.
* ``model`` (``enable_model_cpu_offload``): one component at a time: its weights + its part's.
* ``group`` (block-level group offload, one block a group, prefetched on a stream): what lies
  outside the repeated blocks + the running block + the next one arriving; the VAE is excluded
  from group offload (whole).
* ``sequential`` (accelerate's per-module hooks): the running module + the next one.

Quantized weights are cast back to the compute dtype one layer at a time while that layer runs
(fp8 layerwise casting; torchao, bitsandbytes and GGUF dequantize likewise): the largest such
layer in bf16 is added to that part's activations.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PlacedPart", "peak_device_bytes", "host_bytes", "RAM_BASE_GB", "OFFLOADS"]

GB = 1e9
OFFLOADS = ("none", "model", "group", "sequential")
# Host RAM beside the weights: Python, torch, diffusers, transformers, the tokenizer, the decoded
# frames (measured on this machine's tiny runs: ~2.2 GB resident; rounded up).
RAM_BASE_GB = 3.0


@dataclass(frozen=True)
class PlacedPart:
    part: str                # transformer, transformer_2, text_encoder, image_encoder, vae_encode, vae_decode
    component: str           # the pipeline attribute whose weights it uses
    weights: float           # bytes of that component at the plan's format
    activations: float       # traced peak bytes of one call (+ the dequantized layer, if quantized)
    group_resident: float    # bytes group offload keeps on the device (outside the blocks + 2 blocks)
    largest_module: float    # bytes of its largest module at the plan's format
    grouped: bool            # group offload applies (the VAE is excluded)


def _resident(offload: str, part: PlacedPart) -> float:
    if offload in ("none", "model") or (offload == "group" and not part.grouped):
        return part.weights
    if offload == "group":
        return part.group_resident
    return 2 * part.largest_module


def peak_device_bytes(offload: str, parts: list[PlacedPart]) -> float:
    """The largest device footprint over the parts, under ``offload``."""
    if offload == "none":
        weights = {p.component: p.weights for p in parts}
        return sum(weights.values()) + max(p.activations for p in parts)
    return max(_resident(offload, p) + p.activations for p in parts)


def host_bytes(offload: str, parts: list[PlacedPart]) -> float:
    """Host RAM: loading passes each component through RAM (the largest at once); with offload
    every component lives there for the whole run."""
    weights = {p.component: p.weights for p in parts}
    held = max(weights.values()) if offload == "none" else sum(weights.values())
    return RAM_BASE_GB * GB + held
