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

__all__ = ["sample", "warning_level", "Sampler", "cuda_index", "nvml_handle", "torch_identity", "visible_entries"]

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

    def library(self) -> Any:
        """The initialised ``pynvml`` module, or None where there is no NVML (or no GPU)."""
        with self.lock:
            if self.ready is None:
                try:
                    import pynvml

                    pynvml.nvmlInit()
                    self.module, self.ready = pynvml, pynvml.nvmlDeviceGetCount() > 0
                except Exception as exc:  # no driver, no library, no GPU: RAM it is
                    log.debug("NVML unavailable: %s", exc)
                    self.ready = False
            return self.module if self.ready else None


_nvml = _Nvml()


# ---------------------------------------------------------------------------------------------
# Which NVML device is torch's device
# ---------------------------------------------------------------------------------------------
# torch numbers the devices CUDA_VISIBLE_DEVICES lets it see (0, 1, ... in that list's order);
# NVML numbers every GPU of the machine, by PCI bus. With CUDA_VISIBLE_DEVICES=3 (every Ray
# worker) torch's cuda:0 is NVML's device 3. The device is therefore found by what both agree
# on: its UUID, else its PCI bus id; the CUDA_VISIBLE_DEVICES entry when torch has no CUDA yet.
def cuda_index(device: Any = None) -> int | None:
    """torch's index of ``device`` (``"cuda:1"``, ``torch.device``, an int); None when it is not CUDA.
    ``None``/``"cuda"``: the current device where torch has CUDA running, else 0."""
    if device is None or str(device) == "cuda":
        torch = sys.modules.get("torch")
        try:
            if torch is not None and torch.cuda.is_initialized():
                return int(torch.cuda.current_device())
        except Exception:
            pass
        return 0
    if isinstance(device, int) and not isinstance(device, bool):
        return device if device >= 0 else None
    text = str(device)
    if text.startswith("cuda:") and text[5:].isdigit():
        return int(text[5:])
    return None


def _cuda_device_index() -> int:
    """torch's index of the current device (kept for callers of the first version)."""
    return cuda_index() or 0


def torch_identity(index: int) -> tuple[str | None, str | None]:
    """(UUID, PCI bus id) of torch's CUDA device ``index`` as NVML writes them; (None, None) where
    torch has not started CUDA in this process (asking would start it: the Jupyter server must not)."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_initialized():
            return None, None
        properties = torch.cuda.get_device_properties(index)
    except Exception:
        return None, None
    uuid = getattr(properties, "uuid", None)
    uuid = str(uuid) if uuid else None
    if uuid and not uuid.startswith(("GPU-", "MIG-")):
        uuid = "GPU-" + uuid   # torch prints the bare UUID, NVML prefixes it
    parts = [getattr(properties, f"pci_{n}_id", None) for n in ("domain", "bus", "device")]
    pci = "{:08X}:{:02X}:{:02X}.0".format(*parts) if all(isinstance(p, int) for p in parts) else None
    return uuid, pci


def visible_entries(value: str | None) -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as CUDA reads it: the entries up to the first invalid one; None when unset."""
    if value is None:
        return None
    entries = []
    for entry in (e.strip() for e in value.split(",")):
        if not (entry.isdigit() or entry.startswith(("GPU-", "MIG-"))):
            break   # CUDA ignores an invalid entry and every one after it
        entries.append(entry)
    return entries


def _by_uuid(nvml: Any, uuid: str) -> Any:
    try:
        return nvml.nvmlDeviceGetHandleByUUID(uuid)
    except Exception:
        pass
    # CUDA_VISIBLE_DEVICES may give a unique prefix of the UUID; NVML wants all of it.
    matches = []
    for i in range(nvml.nvmlDeviceGetCount()):
        handle = nvml.nvmlDeviceGetHandleByIndex(i)
        full = nvml.nvmlDeviceGetUUID(handle)
        full = full.decode() if isinstance(full, bytes) else str(full)
        if full.startswith(uuid):
            matches.append(handle)
    return matches[0] if len(matches) == 1 else None


def nvml_handle(nvml: Any, index: int, *, uuid: str | None = None, pci_bus_id: str | None = None,
                visible: str | None = None) -> Any:
    """NVML's handle of torch's CUDA device ``index``: by UUID, else PCI bus id (both from torch),
    else through ``visible`` (CUDA_VISIBLE_DEVICES); None if it cannot be told."""
    for lookup, key in ((_by_uuid, uuid), (lambda n, k: n.nvmlDeviceGetHandleByPciBusId(k), pci_bus_id)):
        if key:
            try:
                handle = lookup(nvml, key)
            except Exception:
                handle = None
            if handle is not None:
                return handle
    entries = visible_entries(visible)
    try:
        if entries is None:
            return nvml.nvmlDeviceGetHandleByIndex(index)
        if index >= len(entries):
            return None   # torch has no such device here
        entry = entries[index]
        # A number is a physical index. CUDA orders devices fastest first unless
        # CUDA_DEVICE_ORDER=PCI_BUS_ID, NVML by PCI bus: on a machine of mixed cards the two can
        # differ, which is why torch's own UUID is asked first once CUDA runs.
        return _by_uuid(nvml, entry) if not entry.isdigit() else nvml.nvmlDeviceGetHandleByIndex(int(entry))
    except Exception:
        return None


def _torch_cuda_mb(index: int) -> tuple[float, float] | None:
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
            return torch.cuda.memory_allocated(index) / MB, torch.cuda.memory_reserved(index) / MB
    except Exception:
        pass
    return None


def _gpu_sample(device: Any = None) -> dict[str, Any] | None:
    index = cuda_index(device)
    nvml = _nvml.library() if index is not None else None
    if nvml is None:
        return None
    uuid, pci = torch_identity(index)
    handle = nvml_handle(nvml, index, uuid=uuid, pci_bus_id=pci, visible=os.environ.get("CUDA_VISIBLE_DEVICES"))
    if handle is None:
        return None
    try:
        info = nvml.nvmlDeviceGetMemoryInfo(handle)
        name = nvml.nvmlDeviceGetName(handle)
    except Exception as exc:
        log.debug("NVML read failed: %s", exc)
        return None
    if isinstance(name, bytes):
        name = name.decode()
    total, used, free = info.total / MB, info.used / MB, info.free / MB
    torch_mb = _torch_cuda_mb(index)
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


def sample(device: Any = None) -> dict[str, Any]:
    """One reading with the ``vram_monitoring`` fields (plus ``used_mb`` and ``source``), of
    ``device`` (``"cuda:1"``; None: the current CUDA device; a CPU device: RAM).

    ``allocated_percent`` is the share of the device in use by anyone (NVML ``used``), because
    that is what decides whether the next allocation fails. Without a GPU the figures are RAM:
    ``allocated_mb`` is this process's resident memory, ``device_name`` is ``"cpu"``.
    """
    return _gpu_sample(device) or _ram_sample()


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
