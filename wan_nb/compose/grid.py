"""Comparison grids: X/Y/Z axes over generation arguments, one ordinary task a cell.

``gen.grid(prompt="a fox in the snow", x=("seed", "0-2"), y=("prompt_sr", ["fox", "owl"]), steps=8)``
queues six tasks (or fewer: see *incremental*) and returns a :class:`Grid`, which is a
:class:`~wan_nb.core.task.Sweep` — ``results()``, iteration over ``(label, task)`` and display
work as for a sweep; in a notebook it displays as the lockstep grid player
(``wan_nb.widgets.lockstep``). ``to_mp4`` and ``to_html`` (``wan_nb.compose.grid_film``) export it.

Axes and their value syntax: :mod:`wan_nb.compose.grid_axes`. ``prompt_sr`` works as in A1111: its first
value is searched for in the prompt and each value replaces it (so the first cell keeps the
prompt as written). A ``lora:<name>`` axis sets that adapter's weight on top of the grid's other
LoRA weights (``loras=`` if given, else the weights the adapters were loaded with). A ``loras``
axis value is the set of adapters that are on in that cell (``{}``: none), with their weights;
a ``lora:<name>`` axis alongside it sets that one weight on top.

Run order: cells with the same LoRA weights are queued next to each other (first the first
set's cells, in grid order, then the next set's), so the adapters change as seldom as
possible; everything else runs in grid order (z pages, then rows, then columns).

Incremental: before queuing a cell, the grid looks for a run with the same full recipe — model,
every parameter (a seed is always fixed: without ``seed=`` the grid draws one for all its
cells), the LoRAs' files and weights — among this generator's tasks and in its runs dir, and
reuses it. Widening an axis therefore renders only the new cells. ``refresh=True`` renders
every cell again.
"""

from __future__ import annotations

import copy
import itertools
import random
from dataclasses import dataclass, field
from typing import Any, Mapping

from wan_nb.protocol import frontend
from wan_nb.core.task import Sweep
from wan_nb.compose.grid_axes import Axis, AxisError, parse_axis
from wan_nb.compose import grid_reuse
from wan_nb.core import lora_schedule

__all__ = ["Grid", "Cell", "build_grid", "AxisError"]

MAX_CELLS = 2_000


@dataclass
class Cell:
    """One cell: where it sits, what it runs, and the task (or reused run) that makes its video."""

    x: int
    y: int
    z: int
    prompt: str
    kwargs: dict[str, Any]
    label: dict[str, Any]     # axis name -> this cell's value (as a sweep's labels)
    task: Any = None
    reused: bool = False
    key: str | None = field(default=None, repr=False)

    @property
    def lora_set(self) -> tuple[tuple[str, Any], ...]:
        # hashable: a schedule (a list, a pair) by its text (wan_nb.core.lora_schedule.key)
        return tuple(sorted((n, w if lora_schedule.is_constant(w) else lora_schedule.key(w))
                            for n, w in (self.kwargs.get("loras") or {}).items()))


class Grid(Sweep):
    """The cells of a comparison grid and their tasks (a :class:`Sweep`, labelled by axis value)."""

    def __init__(self, generator: Any, prompt: str, axes: dict[str, Axis | None], cells: list[Cell],
                 fixed: dict[str, Any]) -> None:
        super().__init__(labels=[dict(c.label) for c in cells], tasks=[c.task for c in cells])
        self.generator = generator
        self.prompt = prompt
        self.x, self.y, self.z = axes.get("x"), axes.get("y"), axes.get("z")
        self.cells = cells
        self.fixed = fixed

    @property
    def axes(self) -> list[Axis]:
        return [a for a in (self.x, self.y, self.z) if a is not None]

    @property
    def shape(self) -> tuple[int, int, int]:
        """(pages, rows, columns)."""
        return (len(self.z) if self.z else 1, len(self.y) if self.y else 1, len(self.x) if self.x else 1)

    def cell(self, x: int = 0, y: int = 0, z: int = 0) -> Cell:
        pages, rows, columns = self.shape
        if not (0 <= x < columns and 0 <= y < rows and 0 <= z < pages):
            raise IndexError(f"cell ({x}, {y}, {z}) is outside this {columns}x{rows}x{pages} grid")
        return self.cells[(z * rows + y) * columns + x]

    def page(self, z: int = 0) -> list[list[Cell]]:
        """The cells of one z page as rows."""
        _, rows, columns = self.shape
        return [[self.cell(x, y, z) for x in range(columns)] for y in range(rows)]

    @property
    def reused(self) -> int:
        """How many cells took a finished run's video instead of rendering."""
        return sum(1 for c in self.cells if c.reused)

    def recipe(self) -> dict[str, Any]:
        """What made this grid: the prompt, the axes, the fixed arguments, and each cell's run."""
        from wan_nb.core.params import public_params

        def axis(a: Axis | None) -> dict[str, Any] | None:
            return None if a is None else {"name": a.name, "labels": list(a.labels),
                                            "values": [public_params({a.name: v})[a.name] for v in a.values]}

        return {"kind": "wan_nb.grid", "model": self.generator.model, "prompt": self.prompt,
                "x": axis(self.x), "y": axis(self.y), "z": axis(self.z),
                "fixed": public_params(self.fixed),   # pictures and videos described, not embedded
                "cells": [{"x": c.x, "y": c.y, "z": c.z, "task_id": c.task.id, "reused": c.reused,
                           "prompt": c.prompt, "label": self.cell_labels(c)} for c in self.cells]}

    def cell_labels(self, cell: Cell) -> dict[str, str]:
        """A cell's axis values as the short texts headers show."""
        out = {}
        for axis, index in ((self.x, cell.x), (self.y, cell.y), (self.z, cell.z)):
            if axis is not None:
                out[axis.name] = axis.labels[index]
        return out

    def to_mp4(self, path: Any, **options: Any) -> Any:
        """One tiled MP4 with axis labels in the margins (see :func:`wan_nb.compose.grid_film.to_mp4`)."""
        from wan_nb.compose.grid_film import to_mp4

        return to_mp4(self, path, **options)

    def to_html(self, path: Any, **options: Any) -> Any:
        """One page with the lockstep player (the front end writes it: :mod:`wan_nb.widgets.grid_page`)."""
        return frontend.show("grid_page", self, path=path, **options)

    def _ipython_display_(self) -> None:
        frontend.show("grid", self)

    def __repr__(self) -> str:
        pages, rows, columns = self.shape
        names = " x ".join(f"{a.name}[{len(a)}]" for a in self.axes)
        return f"Grid({columns}x{rows}" + (f"x{pages}" if self.z else "") + f": {names}; {len(self.cells)} cells, " \
               f"{self.reused} reused)"


def _base_loras(generator: Any, fixed: Mapping[str, Any]) -> dict[str, float]:
    given = fixed.get("loras")
    return dict(given) if given else dict(generator.loras)


def _apply(axis: Axis, index: int, prompt: str, kwargs: dict[str, Any], base_loras: dict[str, float],
           role: str) -> str:
    """Put one axis value into a cell's prompt / arguments; returns the prompt."""
    value = axis.values[index]
    if axis.name == "prompt":
        return value
    if axis.name == "prompt_sr":
        search = axis.values[0]
        if search not in prompt:
            raise AxisError(f"{role}: prompt_sr searches for {search!r}, which is not in the prompt {prompt!r}; "
                            "its first value must be a part of the prompt")
        return prompt.replace(search, value)
    if axis.name == "loras":
        # The dict lists the adapters that are on: every other loaded one is off in this cell.
        kwargs["loras"] = {**{name: 0.0 for name in base_loras}, **value}
        return prompt
    if axis.lora is not None:
        loras = dict(kwargs.get("loras") or base_loras)
        loras[axis.lora] = value
        kwargs["loras"] = loras
        return prompt
    kwargs[axis.name] = copy.copy(value)
    return prompt


def _run_order(cells: list[Cell]) -> list[Cell]:
    """Grid order, except that cells with the same LoRA weights come together (first seen first)."""
    rank: dict[tuple, int] = {}
    for cell in cells:
        rank.setdefault(cell.lora_set, len(rank))
    return sorted(cells, key=lambda c: rank[c.lora_set])  # sorted() is stable: grid order within a set


def build_grid(generator: Any, prompt: str, x: Any, y: Any = None, z: Any = None, *, refresh: bool = False,
               **fixed: Any) -> Grid:
    """Check every axis and cell, then queue the cells that need rendering (see the module doc)."""

    if not isinstance(prompt, str) or not prompt.strip():
        raise AxisError("grid needs prompt='...' (the text that prompt / prompt_sr axes start from)")
    fixed = {k: v for k, v in fixed.items() if v is not None}   # None means "the default", as in generate
    loaded = list(generator.loras)
    axes: dict[str, Axis | None] = {}
    for role, spec in (("x", x), ("y", y), ("z", z)):
        axes[role] = None if spec is None else parse_axis(spec, role, loaded)
    if axes["x"] is None:
        raise AxisError("grid needs at least an x axis, e.g. x=('seed', [0, 1, 2])")
    named = [a.name for a in axes.values() if a is not None]
    for name in named:
        if named.count(name) > 1:
            raise AxisError(f"axis {name!r} is given twice; each axis varies a different argument")
        if name in fixed:
            raise AxisError(f"{name!r} is both an axis and a fixed argument ({name}={fixed[name]!r}); drop one")
    if "seed" not in named and fixed.get("seed") is None:
        # One seed for every cell, so cells differ only by their axes (and can be found again).
        fixed["seed"] = random.SystemRandom().randrange(0, 2**32)
    base_loras = _base_loras(generator, fixed)
    order = [("z", axes["z"]), ("y", axes["y"]), ("x", axes["x"])]
    ranges = [range(len(a)) if a is not None else range(1) for _, a in order]
    count = 1
    for r in ranges:
        count *= len(r)
    if count > MAX_CELLS:
        raise AxisError(f"grid: {count} cells is more than {MAX_CELLS}; vary fewer values at a time")

    # Whole prompts first, search/replace last (on the prompt the cell ends up with); a "loras"
    # set before any "lora:<name>" weight, which then applies on top of it.
    rank = {"prompt": 0, "loras": 1, "prompt_sr": 4}
    applied = sorted((role for role in ("x", "y", "z") if axes[role] is not None),
                     key=lambda role: rank.get(axes[role].name, 3 if axes[role].lora else 2))
    cells: list[Cell] = []
    for iz, iy, ix in itertools.product(*ranges):
        where = {"x": ix, "y": iy, "z": iz}
        kwargs = copy.copy(fixed)
        if "loras" in kwargs:
            kwargs["loras"] = dict(kwargs["loras"])
        text = prompt
        for role in applied:
            text = _apply(axes[role], where[role], text, kwargs, base_loras, role)
        label = {axes[r].name: axes[r].values[where[r]] for r in ("x", "y", "z") if axes[r] is not None}
        cells.append(Cell(x=ix, y=iy, z=iz, prompt=text, kwargs=kwargs, label=label))

    # Validate every cell before queuing any: a bad value costs no generation.
    resolved = []
    for cell in cells:
        resolved.append(generator.check(cell.prompt, **cell.kwargs))

    find = grid_reuse.finder(generator)
    for cell, params in zip(cells, resolved):
        cell.key, found = find(params)
        if found is not None and not refresh:
            cell.task, cell.reused = found, True
    made: dict[str, Any] = {}   # the same recipe twice in one grid: one new task
    for cell in _run_order(cells):
        if cell.task is not None:
            continue
        if cell.key is not None and cell.key in made:
            cell.task = made[cell.key]
            continue
        # A stopped run of the same recipe is continued, not shown as done (grid_reuse.Finder.submit).
        cell.task = find.submit(cell.prompt, cell.kwargs, None if refresh else cell.key)
        if cell.key is not None:
            made[cell.key] = cell.task
    return Grid(generator, prompt.strip(), axes, cells, fixed)
