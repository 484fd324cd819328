"""Memory sampling: NVML and torch.cuda when there is a GPU, process and system RAM when not.

Imports neither torch nor pynvml at module level: the Jupyter server samples memory too and must
not pay for torch. torch is consulted only if the process has already imported it.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, Callable

__all__ = ["sample", "warning_level", "Sampler"]

log = logging.getLogger(__name__)

WARNING_AT = 75.0
CRITICAL_ABOVE = 90.0
MB = 1024 * 1024


def warning_level(percent: float) -> str:
    """``normal`` < 75 % <= ``warning`` <= 90 % < ``critical``."""
    if percent < WARNING_AT:
        return "normal"
    if percent <= CRITICAL_ABOVE:
        return "warning"
    return "critical"


class _Nvml:
    """Lazily initialised NVML; any failure turns it off quietly for the life of the process."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ready: bool | None = None
        self.module: Any = None

    def handle(self, index: int):
        with self.lock:
            if self.ready is None:
                try:
                    import pynvml

                    pynvml.nvmlInit()
                    self.module, self.ready = pynvml, pynvml.nvmlDeviceGetCount() > 0
                except Exception as exc:  # no driver, no library, no GPU: RAM it is
                    log.debug("NVML unavailable: %s", exc)
                    self.ready = False
            if not self.ready:
                return None
        try:
            return self.module.nvmlDeviceGetHandleByIndex(index)
        except Exception:
            return None


_nvml = _Nvml()


def _cuda_device_index() -> int:
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized():
            return torch.cuda.current_device()
    except Exception:
        pass
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    first = visible.split(",")[0].strip()
    return int(first) if first.isdigit() else 0


def _torch_cuda_mb() -> tuple[float, float] | None:
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            return torch.cuda.memory_allocated() / MB, torch.cuda.memory_reserved() / MB
    except Exception:
        pass
    return None


def _gpu_sample() -> dict[str, Any] | None:
    handle = _nvml.handle(_cuda_device_index())
    if handle is None:
        return None
    try:
        info = _nvml.module.nvmlDeviceGetMemoryInfo(handle)
        name = _nvml.module.nvmlDeviceGetName(handle)
    except Exception as exc:
        log.debug("NVML read failed: %s", exc)
        return None
    if isinstance(name, bytes):
        name = name.decode()
    total, used, free = info.total / MB, info.used / MB, info.free / MB
    torch_mb = _torch_cuda_mb()
    # allocated/reserved are this process's torch figures when torch runs CUDA here; otherwise
    # the device's used memory (e.g. sampled from the Jupyter server, which has no torch).
    allocated, reserved = torch_mb if torch_mb is not None else (used, used)
    percent = 100.0 * used / total if total else 0.0
    return {"allocated_mb": round(allocated, 1), "reserved_mb": round(reserved, 1),
            "free_mb": round(free, 1), "total_mb": round(total, 1), "used_mb": round(used, 1),
            "allocated_percent": round(percent, 2), "warning_level": warning_level(percent),
            "device_name": name, "source": "nvml"}


def _ram_sample() -> dict[str, Any]:
    import psutil

    memory = psutil.virtual_memory()
    rss = psutil.Process().memory_info().rss / MB
    total, available = memory.total / MB, memory.available / MB
    used = total - available
    percent = 100.0 * used / total if total else 0.0
    return {"allocated_mb": round(rss, 1), "reserved_mb": round(rss, 1), "free_mb": round(available, 1),
            "total_mb": round(total, 1), "used_mb": round(used, 1),
            "allocated_percent": round(percent, 2), "warning_level": warning_level(percent),
            "device_name": "cpu", "source": "ram"}


def sample() -> dict[str, Any]:
    """One reading with the ``vram_monitoring`` fields (plus ``used_mb`` and ``source``).

    ``allocated_percent`` is the share of the device in use by anyone (NVML ``used``), because
    that is what decides whether the next allocation fails. Without a GPU the figures are RAM:
    ``allocated_mb`` is this process's resident memory, ``device_name`` is ``"cpu"``.
    """
    return _gpu_sample() or _ram_sample()


class Sampler:
    """Calls ``emit(sample())`` about every ``interval`` seconds on a daemon thread until stopped."""

    def __init__(self, emit: Callable[[dict[str, Any]], Any], interval: float = 1.0,
                 read: Callable[[], dict[str, Any]] = sample) -> None:
        self._emit = emit
        self._read = read
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wan_nb-memory-sampler", daemon=True)

    def start(self) -> "Sampler":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._emit(self._read())
            except Exception:  # monitoring must never break generation
                log.debug("memory sample failed", exc_info=True)
            self._stop.wait(self._interval)

    def stop(self, final_reading: bool = False) -> None:
        """Stop sampling; ``final_reading`` emits one last reading first (from this thread), so
        even a run shorter than the interval has a reading at its start and at its end."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2.0)
        if final_reading:
            try:
                self._emit(self._read())
            except Exception:
                log.debug("memory sample failed", exc_info=True)
