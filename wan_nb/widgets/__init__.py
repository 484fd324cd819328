"""Notebook front end: progress panel, memory chart, video player, gallery.

The core reaches these through ``wan_nb.protocol.frontend.show(kind, obj)`` (``Task._ipython_display_`` →
:func:`show_task` …), never by importing this package. Each ``show_*``
displays a widget when the code runs in a Jupyter kernel, and falls back to plain text progress
(``wan_nb.cli.console``) in a terminal or plain IPython, where widgets cannot render.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from ._env import display, widgets_available
from ._errors import install_error_display

__all__ = ["show_task", "show_result", "show_generator", "show_sweep", "show_grid", "show_history", "show_storyboard",
           "show_storyboard_result", "show_progress", "show_live", "gallery", "widgets_available", "install_error_display",
           "ProgressPanel", "GeneratorPanel", "VramPlot", "CancelButton", "VideoPlayer", "ResultView", "Gallery", "SweepView", "LockstepGrid"]


_display = display  # the name the show_* functions below use


def show_task(task: Any, stream: TextIO | None = None) -> Any:
    """Display a task's live progress panel (text progress outside Jupyter)."""
    if widgets_available():
        from .panel import ProgressPanel

        return _display(ProgressPanel(task))
    from wan_nb.cli.console import follow_in_background

    return follow_in_background(task, stream)


def show_progress(task: Any, mode: str | bool = "auto") -> Any:
    """A blocking ``generate``'s progress, fitted to where output goes (tqdm-style).

    ``"auto"``: a widget panel in a Jupyter kernel, a text line on a terminal, nothing when output
    goes nowhere a person reads live (a pipe, a log); ``"text"`` forces text; ``False`` nothing.
    """
    if mode is False or mode == "none":
        return None
    from wan_nb.cli.console import follow_in_background

    if mode == "text":
        return follow_in_background(task)
    if mode == "auto" and "ipykernel" not in sys.modules and not sys.stderr.isatty():
        return None
    return show_task(task)


def show_live(handle: Any, mode: str | bool = "auto") -> Any:
    """A blocking storyboard run's panel, in a Jupyter kernel only (nothing elsewhere)."""
    if mode in (False, "none") or "ipykernel" not in sys.modules or not widgets_available():
        return None
    from IPython.display import display

    display(handle)
    return handle


def show_history(runs: Any, stream: TextIO | None = None) -> Any:
    """A list of past runs as a gallery (a table outside Jupyter)."""
    from .history import show_history as show

    return show(runs, stream)


def show_storyboard(source: Any, stream: TextIO | None = None) -> Any:
    """A storyboard's live panel (a text summary outside Jupyter)."""
    from .storyboard_panel import show_storyboard as show

    return show(source, stream)


def show_storyboard_result(result: Any, stream: TextIO | None = None) -> Any:
    """A finished storyboard's videos (paths as text outside Jupyter)."""
    from .storyboard_panel import show_storyboard_result as show

    return show(result, stream)


def show_result(result: Any, stream: TextIO | None = None) -> Any:
    """Display a finished video with its parameters and a download link."""
    if widgets_available():
        from .video import ResultView

        return _display(ResultView(result))
    out = stream or sys.stdout
    out.write(f"{result!r}\nvideo: {result.video_path}\n")
    return None


def show_generator(generator: Any, stream: TextIO | None = None) -> Any:
    """Display a panel following whichever task of ``generator`` is running."""
    if widgets_available():
        from .panel import GeneratorPanel

        return _display(GeneratorPanel(generator))
    out = stream or sys.stdout
    tasks = generator.tasks
    out.write(f"Generator(model={generator.model!r}, device={generator.device!r}, tasks={len(tasks)})\n")
    for task in tasks[-10:]:
        out.write(f"  {task!r}\n")
    return None


def show_sweep(sweep: Any, stream: TextIO | None = None) -> Any:
    """Display a sweep as a grid: progress per task, then its video, labelled by what varies."""
    if widgets_available():
        from .grid import SweepView

        return _display(SweepView(sweep))
    from .grid import format_label

    out = stream or sys.stdout
    for index, (label, task) in enumerate(sweep):
        out.write(f"{format_label(label, index):<40} {task.status:<10} {task.progress:5.1f}%\n")
    return None


def show_grid(grid: Any, stream: TextIO | None = None) -> Any:
    """Display a comparison grid: the lockstep player (a text table of cells outside Jupyter)."""
    if widgets_available():
        from .lockstep import LockstepGrid

        return _display(LockstepGrid(grid))
    out = stream or sys.stdout
    out.write(f"{grid!r}\n")
    for cell in grid.cells:
        where = ", ".join(f"{k}={v}" for k, v in grid.cell_labels(cell).items())
        out.write(f"  {where:<40} {cell.task.status:<10} {'reused' if cell.reused else ''}\n")
    return None


def gallery(results: Any, *, labels: Any = None, columns: int | None = None, display: bool = False,
            stream: TextIO | None = None) -> Any:
    """A grid of videos labelled by what differs between them (prompt, seed, LoRA weights …).

    Returns the :class:`Gallery` widget, which shows as a cell's last expression (or pass
    ``display=True``); in a terminal prints one line per video instead.
    """
    from .grid import Gallery, differing_labels, format_label, to_results

    if widgets_available():
        view = Gallery(results, labels=labels, columns=columns)
        return _display(view) if display else view
    results = to_results(results)
    labels = labels if labels is not None else differing_labels(results)
    out = stream or sys.stdout
    for index, (label, result) in enumerate(zip(labels, results)):
        out.write(f"{format_label(label, index):<40} {result.video_path}\n")
    return None


show_gallery = gallery  # frontend.show("gallery", results)


def show_grid_page(grid: Any, path: Any, **options: Any) -> Any:
    """``grid.to_html(path)``: the grid as one standalone page (written, not shown; no widget needed)."""
    from .grid_page import to_html

    return to_html(grid, path, **options)


def __getattr__(name: str) -> Any:
    # The widget classes import ipywidgets/anywidget: load them only when asked for.
    if name in ("ProgressPanel", "GeneratorPanel"):
        from . import panel

        return getattr(panel, name)
    if name == "VramPlot":
        from .vram_plot import VramPlot

        return VramPlot
    if name == "CancelButton":
        from .cancel_button import CancelButton

        return CancelButton
    if name in ("VideoPlayer", "ResultView"):
        from . import video

        return getattr(video, name)
    if name in ("Gallery", "SweepView"):
        from . import grid as _grid

        return getattr(_grid, name)
    if name == "LockstepGrid":
        from .lockstep import LockstepGrid

        return LockstepGrid
    raise AttributeError(f"module 'wan_nb.widgets' has no attribute {name!r}")
