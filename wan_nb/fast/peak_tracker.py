"""Peak memory of a piece of torch code, counted from the tensors it makes (real or fake).

:class:`PeakTracker` is a ``TorchDispatchMode``: every tensor an operator returns is followed to
its storage, counted once (views share it) and uncounted when the storage is freed, so the live
total at each operator is what an allocator would hold, minus its rounding and caching (which
:mod:`wan_nb.fast.cards` prices as named constants). Storages that exist before tracking starts
(the weights) are registered with :meth:`PeakTracker.known` and never counted as activations, so
a view of a weight (``weight.t()`` in every linear layer) costs nothing, as on a device.

It works the same on real tensors, which is how the tests compare a fake trace with a real CPU run.
"""

from __future__ import annotations

import weakref
from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["PeakTracker"]


class PeakTracker(TorchDispatchMode):
    """Live and peak bytes of the storages made while it is active (``with PeakTracker() as t``)."""

    def __init__(self) -> None:
        super().__init__()
        self.live: dict[int, int] = {}
        self.current = 0
        self.peak = 0
        self._known: set[int] = set()
        self._keep: list[Any] = []  # the known storages, alive while tracking (their ids stay theirs)

    def known(self, tensors: Any) -> int:
        """Mark the storages of ``tensors`` as already there (weights): never counted. Their bytes."""
        total = 0
        for tensor in tensors:
            storage = tensor.untyped_storage()
            if id(storage) not in self._known:
                self._known.add(id(storage))
                self._keep.append(storage)
                total += storage.nbytes()
        return total

    def add(self, tensor: Any) -> None:
        """Count ``tensor``'s storage (an input made before tracking that the code then owns)."""
        storage = tensor.untyped_storage()
        key = id(storage)
        if key in self._known or key in self.live:
            return
        size = storage.nbytes()
        self.live[key] = size
        self.current += size
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._freed, key)

    def _freed(self, key: int) -> None:
        size = self.live.pop(key, None)
        if size is not None:
            self.current -= size

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        import torch
        from torch.utils._pytree import tree_leaves

        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                self.add(leaf)
        return out
