"""wan_nb: watch and steer Wan 2.x video generation from Jupyter.

``import wan_nb`` is light: the names below load their modules on first use, so a Jupyter
server that imports this package to find its extension loads neither the generator, torch
nor diffusers.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from typing import Any

from ._version import __version__
from .protocol.events import Event, EventType, Stage
from .protocol.frontend import install_error_display as _install_error_display
from .protocol.quiet_imports import install as _quiet_optional_imports

_quiet_optional_imports()  # torchao's harmless CPU-only notices (see wan_nb.protocol.quiet_imports)
_install_error_display()  # in a notebook: our errors' messages first (see wan_nb.widgets._errors)

# Public name -> the module that defines it, imported on first access.
_LAZY = {
    "Generator": "generator",
    "Task": "core.task", "Result": "core.task", "Sweep": "core.task",
    "GenerationError": "protocol.errors", "GenerationCancelled": "protocol.errors",
    "InvalidParameter": "protocol.errors", "StoryboardError": "protocol.errors",
    "StoryboardCancelled": "protocol.errors", "TaskNotQueued": "protocol.errors",
    "ModelNotAvailable": "protocol.errors",
    "Storyboard": "storyboard", "Scene": "storyboard",
    "plan": "fast.planner", "Plan": "fast.planner",
}

# Module paths that users and DESIGN.md name, kept working after the modules moved into their
# layer's folder: ``import wan_nb.events`` gives the very module object of wan_nb.protocol.events.
_MOVED_MODULES = {
    "events": "protocol.events", "errors": "protocol.errors", "task": "core.task",
    "recipe": "core.recipes", "history": "runs.history",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        package, _, name = fullname.rpartition(".")
        if package != __name__ or name not in _MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec: Any) -> Any:
        module = importlib.import_module(f"{__name__}.{_MOVED_MODULES[spec.name.rpartition('.')[2]]}")
        spec.loader_state = module.__spec__  # the import system stamps the alias's spec on it next
        return module

    def exec_module(self, module: Any) -> None:
        # Nothing to run: the module ran under its own name. Give it back its own spec, so that
        # reload() and pickling see one name.
        module.__spec__ = module.__spec__.loader_state


if not any(isinstance(finder, _MovedModuleFinder) for finder in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())

__all__ = ["Generator", "Task", "Result", "Sweep", "Event", "EventType", "Stage", "GenerationError",
           "GenerationCancelled", "InvalidParameter", "StoryboardError", "StoryboardCancelled",
           "TaskNotQueued", "ModelNotAvailable", "Storyboard", "Scene", "presets", "gallery",
           "recipe", "history", "plan", "Plan", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("recipe", "history"):
        # Callable modules: wan_nb.recipe(source), wan_nb.history(runs_dir, **filters).
        return importlib.import_module(f"{__name__}.{_MOVED_MODULES[name]}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wan_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def presets() -> Any:
    """The model presets with download size and VRAM guidance (the data: ``wan_nb.models.presets``)."""
    from wan_nb.models.presets import presets as _presets

    return _presets()


def gallery(results: Any, **kwargs: Any) -> Any:
    """A grid of video players labelled by what differs between ``results`` (for sweeps)."""
    from wan_nb.protocol import frontend

    return frontend.show("gallery", results, **kwargs)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    """Where Jupyter finds the server extension (imported only by a Jupyter server)."""
    from .server import _jupyter_server_extension_points as points

    return points()
