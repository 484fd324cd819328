"""wan_nb: watch and steer Wan 2.x video generation from Jupyter.

``import wan_nb`` stays light (no torch, no diffusers): the Jupyter server imports this package
to find its extension.
"""

from __future__ import annotations

from typing import Any

from .events import Event, EventType, Stage
from .generator import GenerationCancelled, GenerationError, Generator, Result, Sweep, Task
from .params import InvalidParameter

__version__ = "0.1.0"

__all__ = ["Generator", "Task", "Result", "Sweep", "Event", "EventType", "Stage", "GenerationError",
           "GenerationCancelled", "InvalidParameter", "Storyboard", "Scene", "presets", "gallery", "recipe", "history",
           "__version__"]


def presets() -> Any:
    """The model presets with download size and VRAM guidance."""
    from .presets import presets as _presets

    return _presets()


def gallery(results: Any, **kwargs: Any) -> Any:
    """A grid of video players labelled by what differs between ``results`` (for sweeps)."""
    from .widgets import gallery as _gallery

    return _gallery(results, **kwargs)


def __getattr__(name: str) -> Any:
    # Storyboards pull in moviepy; load them only when asked for.
    if name in ("Storyboard", "Scene"):
        from . import storyboard

        return getattr(storyboard, name)
    if name in ("recipe", "history"):
        # Callable modules: wan_nb.recipe(source), wan_nb.history(runs_dir, **filters).
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'wan_nb' has no attribute {name!r}")


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Where Jupyter finds the server extension (imported only by a Jupyter server)."""
    from .server import _jupyter_server_extension_points as points

    return points()
