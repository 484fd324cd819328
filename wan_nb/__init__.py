"""wan_nb: watch and steer Wan 2.x video generation from Jupyter.

``import wan_nb`` is light: the names below load their modules on first use, so a Jupyter
server that imports this package to find its extension loads neither the generator, torch
nor diffusers.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._version import __version__
from .events import Event, EventType, Stage
from .quiet_imports import install as _quiet_optional_imports

_quiet_optional_imports()  # torchao's harmless CPU-only notices (see wan_nb.quiet_imports)

# Public name -> the module that defines it, imported on first access.
_LAZY = {
    "Generator": "generator",
    "Task": "task", "Result": "task", "Sweep": "task",
    "GenerationError": "errors", "GenerationCancelled": "errors", "InvalidParameter": "errors",
    "StoryboardError": "errors", "StoryboardCancelled": "errors", "TaskNotQueued": "errors",
    "ModelNotAvailable": "errors",
    "Storyboard": "storyboard", "Scene": "storyboard",
    "plan": "planner", "Plan": "planner",
}

__all__ = ["Generator", "Task", "Result", "Sweep", "Event", "EventType", "Stage", "GenerationError",
           "GenerationCancelled", "InvalidParameter", "StoryboardError", "StoryboardCancelled",
           "TaskNotQueued", "ModelNotAvailable", "Storyboard", "Scene", "presets", "gallery",
           "recipe", "history", "plan", "Plan", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("recipe", "history"):
        # Callable modules: wan_nb.recipe(source), wan_nb.history(runs_dir, **filters).
        return importlib.import_module(f"{__name__}.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wan_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def presets() -> Any:
    """The model presets with download size and VRAM guidance (the data: ``wan_nb.model_presets``)."""
    from .model_presets import presets as _presets

    return _presets()


def gallery(results: Any, **kwargs: Any) -> Any:
    """A grid of video players labelled by what differs between ``results`` (for sweeps)."""
    from . import frontend

    return frontend.show("gallery", results, **kwargs)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Where Jupyter finds the server extension (imported only by a Jupyter server)."""
    from .server import _jupyter_server_extension_points as points

    return points()
