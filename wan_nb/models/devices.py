"""Where a model runs and in which precision; handing GPU memory back after a run.

``resolve_device_dtype`` turns ``device=`` / ``dtype=`` into a torch device string and dtype. It
refuses a real model with ``device="auto"`` on a machine where torch sees no GPU (a CPU-only torch
wheel, or a driver older than the wheel's CUDA): such a run would silently take hours in fp32 on
the CPU. It is checked before any download.

``release(pipe)`` puts model-offload hooks back in their resting state after a run that ended
early (cancel, failure) or ran through a pipeline that has no hooks of its own (the TI2V
image-to-video twin), so the next run does not load its text encoder beside a resident
transformer.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["resolve_device_dtype", "release", "NoGpu", "BF16_MIN_CAPABILITY"]

log = logging.getLogger("wan_nb")

# bf16 tensor-core kernels (and a memory-efficient SDPA for bf16) start with Ampere, 8.0. Below it
# (T4 7.5, V100 7.0) bf16 is emulated and attention falls back to the math kernel, which at 480p x
# 81 frames needs about 26 GB for one call: fp16 runs there.
BF16_MIN_CAPABILITY = (8, 0)

_DTYPES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
           "half": "float16", "fp32": "float32", "float32": "float32", "float": "float32"}


class NoGpu(ValueError):
    """A real model was asked to run with ``device="auto"`` and torch sees no GPU."""


def _no_gpu_message(model: str) -> str:
    import torch

    build = f"torch {torch.__version__}" + ("" if torch.version.cuda else " (a CPU-only build)")
    return (f"model {model!r} needs a GPU, but {build} sees none (device='auto'). Install a CUDA build "
            "of torch (https://pytorch.org/get-started/locally/) and a driver at least as new as its "
            "CUDA, or pass device='cpu' to run on the CPU anyway (hours per video), or try model='tiny', "
            "which runs on a CPU in seconds.")


def resolve_device_dtype(device: Any = "auto", dtype: Any = "auto", *,
                         real_model: str | None = None) -> tuple[str, Any]:
    """("cuda" | "cpu" | ..., torch.dtype).

    ``device="auto"``: CUDA if torch sees a GPU; else the CPU, except for a real model
    (``real_model`` names it), which is refused with :class:`NoGpu`. ``dtype="auto"``: bf16 on a
    GPU of compute capability 8.0 or newer, fp16 (with a warning) on older ones, fp32 on the CPU.
    """
    import torch

    dev = "auto" if device is None else str(device)
    if dev == "auto":
        if torch.cuda.is_available():
            dev = "cuda"
        elif real_model:
            raise NoGpu(_no_gpu_message(real_model))
        else:
            dev = "cpu"
    try:
        parsed = torch.device(dev)
    except (RuntimeError, TypeError):
        raise ValueError(f"device={device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'.") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={device!r} but this PyTorch sees no CUDA GPU; use device='cpu' "
                             "(slow, fine for model='tiny') or install a CUDA build of torch.")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(f"device={device!r}: only {torch.cuda.device_count()} CUDA device(s) present.")
    if isinstance(dtype, torch.dtype):
        return dev, dtype
    key = "auto" if dtype is None else str(dtype).lower().replace("torch.", "")
    if key == "auto":
        return dev, _auto_dtype(parsed)
    if key not in _DTYPES:
        raise ValueError(f"dtype={dtype!r}: use 'auto', 'bf16', 'fp16' or 'fp32'.")
    return dev, getattr(torch, _DTYPES[key])


def _auto_dtype(device: Any) -> Any:
    import torch

    if device.type != "cuda":
        return torch.float32
    # The chosen GPU's own capability: torch.cuda.is_bf16_supported() also counts emulation and
    # looks at the current device, not necessarily cuda:N.
    index = device.index if device.index is not None else torch.cuda.current_device()
    capability = tuple(torch.cuda.get_device_capability(index))
    if capability >= BF16_MIN_CAPABILITY:
        return torch.bfloat16
    log.warning("wan_nb: %s (cuda:%d) has compute capability %d.%d, below 8.0: using float16, since "
                "bfloat16 is emulated there (pass dtype= to choose)",
                torch.cuda.get_device_name(index), index, *capability[:2])
    return torch.float16


def release(pipe: Any) -> None:
    """Put every component of ``pipe`` back where its offload hooks keep it between runs.

    diffusers does this at the end of a pipeline call (``maybe_free_model_hooks``); a run that
    raised out of the call (cancel, error), or whose decode came after it, or that ran through
    the TI2V image-to-video twin (which has no hooks of its own) skipped it, leaving models on the
    GPU. A no-op without model offload.
    """
    free = getattr(pipe, "maybe_free_model_hooks", None)
    if free is None:
        return
    try:
        free()
    except Exception:  # never turn a finished (or already failed) run into a new failure
        log.debug("wan_nb: could not reset the offload hooks", exc_info=True)
