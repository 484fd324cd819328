"""The one pipeline of a generator: loaded once (on the worker thread), kept, placed, released.

:class:`PipelineHolder` owns the diffusers pipeline and everything about where it computes. The
run (``wan_nb.core.run``), ``run_on_worker`` and LoRA loading all reach the pipeline through it and
hold :attr:`PipelineHolder.lock` while they use it, so user code never races a generation.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Callable

from wan_nb.models import specs as models
from wan_nb.core.engine import LoadOptions

__all__ = ["PipelineHolder", "free_accelerator_memory"]

log = logging.getLogger(__name__)

Report = Callable[..., None]


class PipelineHolder:
    """``spec`` (what to load), ``options`` (how), and the pipeline once loaded."""

    def __init__(self, spec: Any, options: LoadOptions, pipeline: Any = None) -> None:
        self.spec = spec
        self.options = options
        self.pipe: Any = None
        self.device: str | None = None
        self.lock = threading.RLock()
        self._exec_device: tuple[Any, Any] | None = None  # (pipeline, its execution device)
        if pipeline is not None:
            self.adopt(pipeline)

    @property
    def model(self) -> str:
        return self.spec.name

    @property
    def loaded(self) -> bool:
        return self.pipe is not None

    def adopt(self, pipeline: Any) -> None:
        """A pipeline given by its owner stays where it is unless a placement was asked for."""
        options = self.options
        if options.placement_requested:
            from wan_nb.models.loading import place

            place(pipeline, device=models.resolve_device_dtype(options.device, options.dtype)[0],
                  offload=options.offload, vae_tiling=options.vae_tiling, vae_slicing=options.vae_slicing)
        self.pipe = pipeline
        self.device = str(getattr(pipeline, "_execution_device", None) or pipeline.device)

    def load(self, report: Report) -> Any:
        """The pipeline, loading it first if needed. ``report(kind, **fields)`` hears the loader:
        ``("note", message=)``, ``("stage", stage=, message=)`` and ``("loading", progress=, status=, ...)``."""
        if self.pipe is not None:
            return self.pipe
        if "diffusers" not in sys.modules:
            report("note", message="Importing PyTorch and diffusers")  # seconds, once per process
        options = self.options
        # models: a real model with device="auto" and no GPU is refused here, before any download.
        device, dtype = models.resolve_device_dtype(options.device, options.dtype,
                                                    real_model=models.needs_gpu(self.spec))
        started = time.perf_counter()
        # The loader announces downloading_model / loading_model itself: only it knows whether
        # the files are already cached.
        pipe = models.load_pipeline(self.spec, device=device, dtype=dtype, report=report, offload=options.offload,
                                    vae_tiling=options.vae_tiling, vae_slicing=options.vae_slicing,
                                    weights=options.weights or None)
        log.debug("loaded %s in %.2fs", self.spec.name, time.perf_counter() - started)
        self.pipe = pipe
        self.spec = models.refine(self.spec, pipe)  # a repo id guessed by name: now read from its files
        self.device = device
        return pipe

    def execution_device(self, pipe: Any) -> Any:
        """Where the pipeline computes. diffusers finds it by walking every module's hooks
        (milliseconds a call), so it is looked up once per pipeline object and again after
        :meth:`forget_device` (``run_on_worker``, the one place user code may move it)."""
        cached = self._exec_device
        if cached is not None and cached[0] is pipe:
            return cached[1]
        device = getattr(pipe, "_execution_device", None) or self.device
        self._exec_device = (pipe, device)
        return device

    def forget_device(self) -> None:
        self._exec_device = None

    def release_hooks(self) -> None:
        """After a run that ended early: models.release puts model-offload hooks back to rest."""
        if self.pipe is not None:
            models.release(self.pipe)
        free_accelerator_memory()

    def release_accelerator(self, pipe: Any) -> bool:
        """While a task is paused: move the pipeline to the CPU; True if it was moved."""
        device = str(self.execution_device(pipe) or "cpu")
        moved = False
        if self.options.offload == "none" and not device.startswith("cpu") and hasattr(pipe, "to"):
            pipe.to("cpu")
            moved = True
        elif self.options.offload != "none":
            models.release(pipe)  # the offload hooks load each model back when the next step needs it
        free_accelerator_memory()
        return moved


def free_accelerator_memory() -> None:
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            torch.cuda.empty_cache()
    except Exception:
        pass
