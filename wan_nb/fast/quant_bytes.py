"""Bytes of a component's weights in each storage format the planner considers.

int8 and nf4 and GGUF store the ``nn.Linear`` weights (what torchao, bitsandbytes and GGUF files
quantize) in fewer bytes, scales included: int8 one bf16 scale per output row (~0.1 %), nf4 one
fp32 absmax per 64 weights double-quantized (~0.53 B a weight), GGUF blocks: Q8_0 34 B / 32
weights, Q6_K 210 B / 256, Q5_K 176 / 256, Q4_K 144 / 256. fp8 is counted exactly: wan_nb's own
casting applied to the meta model (:attr:`ComponentCount.fp8_bytes`). The VAE and CLIP stay
float32 and are never quantized.
"""

from __future__ import annotations

from wan_nb.fast.planner_counts import ComponentCount

__all__ = ["QUANT_BYTES", "PLANNED_QUANTS", "component_bytes", "quantized"]

QUANT_BYTES: dict[str | None, float] = {None: 2.0, "fp8": 1.0, "int8": 1.0, "nf4": 0.53,
                                        "gguf:Q8_0": 34 / 32, "gguf:Q6_K": 210 / 256,
                                        "gguf:Q5_K_M": 176 / 256, "gguf:Q4_K_M": 144 / 256}
PLANNED_QUANTS: tuple[str | None, ...] = (None, "fp8", "int8", "nf4", "gguf:Q8_0", "gguf:Q4_K_M")


def quantized(c: ComponentCount, quant: str | None) -> str | None:
    """The format ``c`` is stored in under ``quant`` (None: its own dtype)."""
    return quant if c.kind in ("transformer", "umt5") else None


def component_bytes(c: ComponentCount, quant: str | None) -> float:
    """Bytes of component ``c`` stored with ``quant`` (VAE and CLIP stay fp32, unquantized)."""
    if c.fp32:
        return 4.0 * c.params
    q = quantized(c, quant)
    if q == "fp8" and c.fp8_bytes:
        return float(c.fp8_bytes)
    return QUANT_BYTES[q] * c.quantizable + 2.0 * (c.params - c.quantizable)
