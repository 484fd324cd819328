"""The one place where the core hands an object to a front end to show (tqdm's ``autonotebook``).

Core objects display themselves in a notebook (``Task._ipython_display_`` ...) by calling
:func:`show`; they never import a front end. The front end is a plugin named by module path
(``FRONT_END``, the notebook widgets by default), loaded when something is first shown. It
must define ``show_<kind>(obj, **options)`` and choose there between a widget (in a Jupyter
kernel) and plain text (elsewhere). So dependencies point one way only: front ends import the
core, the core knows a front end by name.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["show", "FRONT_END", "install_error_display"]

#: module path of the front end that :func:`show` uses; another one may be set for a session
FRONT_END = "wan_nb.widgets"


def show(kind: str, obj: Any, **options: Any) -> Any:
    """Show ``obj`` with the front end's ``show_<kind>`` (``task``, ``result``, ``sweep``, ...)."""
    front_end = importlib.import_module(FRONT_END)
    try:
        shower = getattr(front_end, f"show_{kind}")
    except AttributeError:
        raise AttributeError(f"the front end {FRONT_END!r} cannot show a {kind!r} (no show_{kind})") from None
    return shower(obj, **options)


def install_error_display() -> None:
    """In a Jupyter kernel, let the front end show wan_nb's errors (its ``install_error_display``:
    the message first, internals hidden). Elsewhere nothing is imported or changed."""
    import sys

    if "ipykernel" not in sys.modules:
        return
    installer = getattr(importlib.import_module(FRONT_END), "install_error_display", None)
    if installer is not None:
        installer()
