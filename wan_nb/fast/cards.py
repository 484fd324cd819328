"""The GPUs the planner knows, and the costs only a CUDA device has (named, with their source).

Card figures are the vendors' datasheets: memory, dense bf16 tensor throughput with fp32
accumulation (what PyTorch's bf16 matmuls use; "with sparsity" figures halved; the 40-series and
50-series GeForce figures are the fp32-accumulate rate, half the fp16-accumulate one), the
convolution throughput the float32 VAE gets (TF32 tensor cores, which PyTorch enables for
convolutions by default; T4 and V100 have none: their fp32 rate), memory bandwidth and the
host link (PCIe generation x16, usable ~80 % of the nominal rate: pinned host-to-device copies).
T4 and V100 have no bf16: wan_nb runs them in float16 (``dtype="auto"``), same bytes, their fp16
tensor rate.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

__all__ = ["Card", "CARDS", "find_card", "cuda_present", "card_for_memory", "CUDA_CONTEXT_GB", "FRAGMENTATION",
           "CONTEXT_GB", "HEADROOM", "ATTENTION_KERNEL_FACTOR"]


@dataclass(frozen=True)
class Card:
    name: str
    memory_gb: float        # 10^9 bytes, as the datasheet counts
    bf16_tflops: float      # dense, fp32 accumulate
    tf32_tflops: float      # float32 convolutions (the VAE)
    bandwidth_gbs: float    # device memory, GB/s
    host_link_gbs: float    # usable host -> device copy rate, GB/s


_PCIE3, _PCIE4, _PCIE5 = 12.8, 25.6, 51.2  # x16, 80 % of 16 / 32 / 64 GB/s
CARDS: tuple[Card, ...] = (
    Card("Tesla T4", 16, 65, 8.1, 320, _PCIE3),
    Card("Tesla V100", 32, 125, 15.7, 900, _PCIE3),  # fp16 tensor rate; 16 GB variant: --gpu-gb 16
    Card("RTX 3060", 12, 25.6, 12.7, 360, _PCIE4),
    Card("RTX 3090", 24, 35.6, 35.6, 936, _PCIE4),
    Card("RTX 4060 Ti", 16, 44.1, 22.1, 288, _PCIE4),
    Card("RTX 4090", 24, 165, 82.6, 1008, _PCIE4),
    Card("RTX 5090", 32, 209.5, 104.8, 1792, _PCIE5),
    Card("A10G", 24, 70, 35, 600, _PCIE4),          # AWS's figure (the A10's datasheet: 125)
    Card("L4", 24, 121, 60, 300, _PCIE4),
    Card("L40S", 48, 362, 183, 864, _PCIE4),
    Card("A100 40GB", 40, 312, 156, 1555, _PCIE4),
    Card("A100 80GB", 80, 312, 156, 2039, _PCIE4),
    Card("H100", 80, 989, 495, 3350, _PCIE5),       # SXM
    Card("H200", 141, 989, 495, 4800, _PCIE5),
)

# CUDA-only costs, subtracted from a card's memory before anything is planned (the GPU check
# measures them and may replace these):
# - the CUDA context with cuBLAS, cuDNN and the PyTorch kernels loaded: ~0.3-0.6 GB on recent
#   drivers (PyTorch's CUDA semantics notes, "memory management"; nvidia-smi after torch.cuda.init()).
CUDA_CONTEXT_GB = 0.6
# - cuBLAS / cuDNN workspaces (cuBLAS: up to 32 MB per stream on Hopper, cuDNN convolution
#   workspaces of a few hundred MB for the VAE's 3D convolutions): ~0.4 GB.
WORKSPACES_GB = 0.4
CONTEXT_GB = CUDA_CONTEXT_GB + WORKSPACES_GB
# - the caching allocator's rounding and fragmentation: blocks round up to 512 B / 2 MB and freed
#   blocks do not always fit the next request; reserved runs ~5 % above allocated in long runs.
FRAGMENTATION = 0.05
HEADROOM = 1.0 - FRAGMENTATION   # plan to use at most this share of what the context leaves
# - attention: the trace runs the CPU flash-attention kernel, which keeps (like CUDA's flash and
#   memory-efficient kernels) the output and a log-sum-exp per query, never the tokens^2 scores.
#   1.0 = the CUDA kernels keep the same; the GPU check measures it.
ATTENTION_KERNEL_FACTOR = 1.0


def _normal(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum()).replace("nvidia", "").replace("geforce", "") \
        .replace("tesla", "")


def find_card(name: str) -> Card:
    """The card called ``name`` ("RTX 4090", "NVIDIA GeForce RTX 4090", "h100 80gb hbm3", "a100-80gb")."""
    wanted = _normal(name)
    exact = [c for c in CARDS if _normal(c.name) == wanted]
    if exact:
        return exact[0]
    # the longest known name inside the given one: "NVIDIA A100-SXM4-80GB" -> A100 80GB via its size
    found = sorted((c for c in CARDS if _normal(c.name.split()[0] if c.name.startswith("A100") else c.name) in wanted),
                   key=lambda c: -len(_normal(c.name)))
    if found and found[0].name.startswith("A100"):
        return next(c for c in found if ("80" in wanted) == ("80" in c.name))
    if found:
        return found[0]
    raise ValueError(f"unknown GPU {name!r}: pass one of {', '.join(repr(c.name) for c in CARDS)}, "
                     "or the memory alone with --gpu-gb N (gpu_gb=N)")


def card_for_memory(memory_gb: float) -> Card:
    """A card of ``memory_gb`` for timing when only the size is known: the known card of the
    nearest size (ties: the slower, so times are not promised too low), with that memory."""
    from dataclasses import replace

    nearest = min(CARDS, key=lambda c: (abs(c.memory_gb - memory_gb), c.bf16_tflops))
    return replace(nearest, name=f"{memory_gb:g} GB GPU (timed as {nearest.name})", memory_gb=float(memory_gb))


def cuda_present() -> bool:
    """Whether this machine can run CUDA: torch's answer if torch is loaded, else whether the NVIDIA
    driver is (importing torch to ask costs seconds, which a cached plan does not otherwise spend)."""
    if "torch" in sys.modules:
        return bool(sys.modules["torch"].cuda.is_available())
    return os.path.exists("/proc/driver/nvidia/version") or os.path.exists("/dev/nvidiactl")
