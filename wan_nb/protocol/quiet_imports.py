"""Silence the known-harmless lines optional quantization packages print when diffusers imports them.

With torchao installed (``pip install 'wan_nb[quant]'``), every ``import diffusers`` model class
imports it, and on a CPU-only torch it logs one line per CUDA kernel library it cannot load,
torch notes a deprecated Enum registration, and diffusers reports torchao tensor classes of an
older torchao. None of it affects a run (the CUDA kernels are only for CUDA), but it lands on
stderr of every notebook cell and CLI run. Only those messages are dropped; every other record
of these loggers passes. Standard library only: ``import wan_nb`` stays light.
"""

from __future__ import annotations

import logging

__all__ = ["install"]

_HARMLESS = {
    "torchao": ("Failed to load ", "Skipping import of cpp extensions"),
    "torch.utils._pytree": ("is an Enum subclass and is now natively supported by torch.compile",),
    "diffusers.quantizers.torchao.torchao_quantizer": ("Unable to import `torchao` Tensor objects",),
    # Without torchvision, transformers loads the PIL image processor of image-to-video models
    # instead (what wan_nb wants on a CPU anyway) and says so once per process.
    "transformers.utils.import_utils": ("requires torchvision (not installed); falling back to",),
}


class _DropKnown(logging.Filter):
    def __init__(self, needles: tuple[str, ...]) -> None:
        super().__init__()
        self.needles = needles

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(needle in message for needle in self.needles)


def install() -> None:
    """Attach the filters once per process (idempotent)."""
    for name, needles in _HARMLESS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropKnown) for f in logger.filters):
            logger.addFilter(_DropKnown(needles))
