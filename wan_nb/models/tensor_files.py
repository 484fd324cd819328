"""Reading a weights file a user names (a LoRA, a TAEHV, RIFE or upscaler checkpoint) without
running anything inside it.

``.safetensors`` holds tensors only. Anything else is read as a torch save with
``weights_only=True``, which refuses pickled code. Training scripts often wrap the tensors
(``params_ema`` in Real-ESRGAN's files, ``state_dict`` in Lightning's), and a DataParallel save
adds ``module.`` to every name. Unwrapping both is left to :func:`unwrap`, for the callers whose
files come that way. Each caller turns :class:`UnreadableTensorFile` into its own error, naming
the file to use instead. Importing this module does not import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

__all__ = ["UnreadableTensorFile", "read_tensor_file", "unwrap"]

# Where training scripts keep the tensors inside a torch save, most specific first.
_WRAPPERS = ("params_ema", "params", "state_dict", "model")


class UnreadableTensorFile(ValueError):
    """The file could not be read as tensors; the message says why (the reader's error)."""


def read_tensor_file(path: Path) -> dict[str, Any]:
    """Name -> value of the tensors in ``path`` (the file must exist: callers say where to look)."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            import torch

            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise UnreadableTensorFile(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(state, Mapping):
        raise UnreadableTensorFile(f"it holds a {type(state).__name__}, not named tensors")
    return dict(state)


def unwrap(state: Mapping[str, Any]) -> dict[str, Any]:
    """The tensors of a training save: the first non-empty wrapper of :data:`_WRAPPERS`, else the
    save itself; ``module.`` prefixes dropped and non-tensor entries (an epoch count) left out."""
    for key in _WRAPPERS:
        inner = state.get(key)
        if isinstance(inner, Mapping) and inner:
            state = inner
            break
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items() if hasattr(v, "shape")}
