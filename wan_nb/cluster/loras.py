"""The driver's LoRAs as Ray workers need them: each weights file travels once, by content key.

A worker may run on another machine, so it cannot read the driver's LoRA paths: every file is
put into Ray's object store once (keyed by path, size and modification time) and the workers
write it to their own disk (``wan_nb.cluster.worker``).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from wan_nb.core.lora_registry import LoraRegistry

__all__ = ["LoraShipper"]


class LoraShipper:
    """``spec()``: the registry's LoRAs as ``{name: {source, weight, experts, files, key}}``.

    ``experts``: how many experts the model has (a single file on a two-expert model goes into
    ``both``, ``high`` or ``low``).
    """

    def __init__(self, ray: Any, registry: LoraRegistry, *, experts: int) -> None:
        self.ray = ray
        self.registry = registry
        self.experts = experts
        self._refs: dict[str, Any] = {}

    def spec(self) -> dict[str, dict[str, Any]]:
        spec = {}
        for name, entry in list(self.registry.entries.items()):
            # {component: LoraState}: one file for every expert it goes into, or a (high, low) pair
            state = entry.state if isinstance(entry.state, dict) else {"transformer": entry.state}
            paths = list(dict.fromkeys(Path(s.path) for s in state.values()))
            experts = None
            if len(paths) == 1 and self.experts >= 2:
                experts = "both" if len(state) == 2 else ("high" if "transformer" in state else "low")
            files = [self.ship(path) for path in paths]
            spec[name] = {"source": entry.source, "weight": entry.weight, "experts": experts, "files": files,
                          "key": "+".join(f["key"] for f in files)}
        return spec

    def ship(self, path: Path) -> dict[str, Any]:
        """One file as a worker fetches it: its key, its name, its bytes in Ray's object store."""
        stat = path.stat()
        key = hashlib.sha1(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        if key not in self._refs:
            self._refs[key] = self.ray.put(path.read_bytes())
        return {"key": key, "filename": path.name, "data": self._refs[key]}
