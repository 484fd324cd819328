"""The generator's surface as the work built on it sees it: typing protocols, nothing else.

Sweeps, grids, reruns, run records, history views and storyboards take "a generator" and use
only what :class:`GeneratorSurface` lists (``wan_nb.Generator`` is one). They import this module,
not ``wan_nb.generator``, so the generator can use them without an import circle. A handle
(``wan_nb.core.task.Handle``) needs even less: an :class:`EventHost` (defined in ``wan_nb.core.task``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, runtime_checkable

from wan_nb.protocol.events import Event
from wan_nb.core.task import EventHost, Handle, Task

__all__ = ["EventHost", "GeneratorSurface"]


@runtime_checkable
class GeneratorSurface(EventHost, Protocol):
    """Submit and subscribe, plus the few public hooks that work built on a generator uses."""

    model: str
    runs_dir: Path
    spec: Any
    device_request: Any
    dtype_request: Any
    load_options: Any   # wan_nb.core.engine.LoadOptions (recipes read its attention / compile)

    def submit(self, prompt: str, **kwargs: Any) -> Task: ...

    def generate(self, prompt: str, **kwargs: Any) -> Any: ...

    def check(self, prompt: str, **kwargs: Any) -> dict[str, Any]: ...

    @property
    def tasks(self) -> list[Task]: ...

    def task(self, task_id: str) -> Task: ...

    @property
    def workers(self) -> int: ...

    @property
    def pipeline(self) -> Any: ...

    @property
    def loras(self) -> dict[str, float]: ...

    @property
    def lora_registry(self) -> Any: ...

    def load_lora(self, path_or_repo: Any, name: str | None = None, weight: float = 1.0, **kw: Any) -> str: ...

    def unload_lora(self, name: str | None = None) -> None: ...

    def new_task_id(self) -> str: ...

    def add_sink(self, sink: Callable[[Event], Any]) -> Callable[[], None]: ...

    def open_task(self, handle: Handle, folder: Path, info: Mapping[str, Any]) -> Any: ...
