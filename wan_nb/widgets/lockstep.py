"""The grid player: row and column headers, a z page selector, one cell a task — its live
progress and preview while it renders, then its video — and one play/pause/scrub/speed/loop
control that keeps every video of the page on the same frame (``static/lockstep.js`` says how).

Clicking a cell shows its recipe, with *Open large* and *Rerun* (which queues the cell again and
follows the new task). Videos reach the browser as binary widget buffers, like
:class:`~wan_nb.widgets.video.VideoPlayer`'s, so no server route is needed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from wan_nb.protocol.events import EventType
from ._throttle import Throttle
from .vram_plot import STATIC

__all__ = ["LockstepGrid", "grid_state", "STATIC"]

_STATUS = {EventType.GENERATION_COMPLETED: "completed", EventType.GENERATION_FAILED: "failed",
           EventType.GENERATION_CANCELLED: "cancelled"}


def _cell_recipe(grid: Any, cell: Any) -> dict[str, Any]:
    from wan_nb.core.params import public_params

    return {"task_id": cell.task.id, "model": grid.generator.model, "reused": cell.reused,
            **public_params(dict(cell.task.params))}


def _cell_state(grid: Any, cell: Any) -> dict[str, Any]:
    task = cell.task
    params = task.params
    title = " · ".join(f"{name}={text}" for name, text in grid.cell_labels(cell).items())
    return {"x": cell.x, "y": cell.y, "z": cell.z, "title": title, "status": task.status,
            "progress": round(float(task.progress), 1), "message": "reused" if cell.reused else "",
            "preview": "", "fps": float(params.get("fps") or 16), "frames": int(params.get("num_frames") or 1),
            "recipe": _cell_recipe(grid, cell)}


def grid_state(grid: Any) -> dict[str, Any]:
    """The player's state for ``grid`` (the widget's traits; ``to_html`` writes the same)."""
    return {"x_name": grid.x.name, "y_name": grid.y.name if grid.y else "", "z_name": grid.z.name if grid.z else "",
            "columns": list(grid.x.labels), "rows": list(grid.y.labels) if grid.y else [],
            "pages": list(grid.z.labels) if grid.z else [], "page": 0, "interactive": True,
            "cells": [_cell_state(grid, c) for c in grid.cells], "tile_width": 192}


class LockstepGrid(anywidget.AnyWidget):
    _esm = STATIC / "lockstep.js"
    _css = STATIC / "lockstep.css"

    x_name = traitlets.Unicode("").tag(sync=True)
    y_name = traitlets.Unicode("").tag(sync=True)
    z_name = traitlets.Unicode("").tag(sync=True)
    columns = traitlets.List(traitlets.Unicode()).tag(sync=True)
    rows = traitlets.List(traitlets.Unicode()).tag(sync=True)
    pages = traitlets.List(traitlets.Unicode()).tag(sync=True)
    page = traitlets.Int(0).tag(sync=True)
    cells = traitlets.List(traitlets.Dict()).tag(sync=True)
    videos = traitlets.List().tag(sync=True)          # per cell: MP4 bytes, or None while rendering
    tile_width = traitlets.Int(192).tag(sync=True)
    interactive = traitlets.Bool(True).tag(sync=True)

    def __init__(self, grid: Any, *, tile_width: int = 192, rate: float = 4.0, **kwargs: Any) -> None:
        state = grid_state(grid)
        state["tile_width"] = tile_width
        super().__init__(videos=[None] * len(grid.cells), **state, **kwargs)
        self.grid = grid
        self._lock = threading.Lock()
        self._state = [dict(c) for c in state["cells"]]
        self._videos: list[bytes | None] = [None] * len(grid.cells)
        self._offs: list[Any] = []
        self._throttle = Throttle(self._render, rate=rate)
        self.on_msg(self._handle_message)
        for index, cell in enumerate(grid.cells):
            self._follow(index, cell.task)

    # -- kernel side -------------------------------------------------------------------------
    def _follow(self, index: int, task: Any) -> None:
        if task.done() and task.status == "completed":
            self._video_ready(index, task)
            return
        self._offs.append(task.subscribe(lambda event, i=index, t=task: self._on_event(i, t, event), replay=True))

    def _on_event(self, index: int, task: Any, event: Any) -> None:
        if self.grid.cells[index].task is not task:
            return  # a rerun replaced this task
        data = event.data
        with self._lock:
            cell = self._state[index]
            if event.type == EventType.DETAILED_GENERATION_PROGRESS:
                cell.update(status="running" if task.status == "queued" else task.status,
                            progress=round(float(data.get("progress") or 0.0), 1), message=str(data.get("message") or ""))
            elif event.type == EventType.PREVIEW and data.get("data_b64"):
                cell["preview"] = f"data:{data.get('mime', 'image/webp')};base64,{data['data_b64']}"
            elif event.type in _STATUS:
                cell.update(status=_STATUS[event.type], message=str(data.get("error") or data.get("stage") or ""))
        if event.type == EventType.GENERATION_COMPLETED:
            task.wait(5.0)
            self._video_ready(index, task)
            self._throttle.flush()
        else:
            self._throttle.request()

    def _video_ready(self, index: int, task: Any) -> None:
        try:
            data = Path(task.result(0).video_path).read_bytes()
        except Exception as exc:  # the file went away: say so in the cell, keep the others
            with self._lock:
                self._state[index].update(status="failed", message=f"video unreadable: {exc}")
            return
        with self._lock:
            self._state[index].update(status="completed", progress=100.0)
            for i, cell in enumerate(self.grid.cells):
                if cell.task is task:     # shared by identical cells
                    self._videos[i] = data
                    self._state[i].update(status="completed", progress=100.0)
        self._throttle.request()

    def _render(self) -> None:
        with self._lock:
            cells = [dict(c) for c in self._state]
            videos = list(self._videos)
        with self.hold_sync():
            if cells != self.cells:
                self.cells = cells
            if any(a is not b for a, b in zip(videos, self.videos)):
                self.videos = videos

    def rerun(self, index: int) -> Any:
        """Queue cell ``index`` again (rendering it anew) and show the new task in its place."""
        cell = self.grid.cells[index]
        task = self.grid.generator.submit(cell.prompt, **cell.kwargs)
        cell.task, cell.reused = task, False
        self.grid.tasks[index] = task
        self.grid.forget_results()
        with self._lock:
            self._state[index] = _cell_state(self.grid, cell)
            self._videos[index] = None
        self._throttle.flush()
        self._follow(index, task)
        return task

    def _handle_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if isinstance(content, dict) and content.get("event") == "rerun":
            index = content.get("index")
            if isinstance(index, int) and 0 <= index < len(self.grid.cells):
                self.rerun(index)

    def close(self) -> None:
        for off in self._offs:
            off()
        self._offs.clear()
        super().close()

    def __repr__(self) -> str:
        return f"LockstepGrid({self.grid!r})"

