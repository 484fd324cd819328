"""Where the notebook front end can draw: a Jupyter kernel with ipywidgets and anywidget."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["widgets_available", "display"]


def widgets_available() -> bool:
    """True inside a Jupyter kernel (where a front end can render widgets)."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    try:
        shell = ipython.get_ipython()
    except Exception:
        return False
    if shell is None or getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
        import anywidget  # noqa: F401
    except ImportError:
        return False
    return True


def display(widget: Any) -> Any:
    """Show ``widget`` in the current cell's output; returns it."""
    from IPython.display import display as show

    show(widget)
    return widget
