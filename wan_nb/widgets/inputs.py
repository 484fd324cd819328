"""A run's inputs beside its result: thumbnails of the images it started from (first and last
frame, reference images, a character) and the videos that steered it (source, control, pose,
mask) playing in a loop.

The files come from the run folder (``<run>/inputs/``, listed in ``task.json``; see
:mod:`wan_nb.runs.kept_inputs`), so a live task, a finished :class:`~wan_nb.Result` and a past run of
the history show the same thing. Like the result video, each file is sent to the browser once as
a widget buffer: no server route is needed.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Mapping

import ipywidgets as w

from wan_nb.runs import kept_inputs as run_inputs
from .player import MAX_EMBED_BYTES, VideoPlayer

__all__ = ["InputsView", "inputs_of"]


def inputs_of(source: Any) -> dict[str, list[Path]]:
    """``name -> files`` of a Result, Run or Task: its own ``inputs`` when it has them, else what
    its run folder lists (a task's folder gains them when the run stores its inputs)."""
    own = getattr(source, "inputs", None)
    if isinstance(own, Mapping) and own and all(isinstance(v, (list, tuple)) for v in own.values()):
        try:
            return {str(name): [Path(p) for p in files] for name, files in own.items()}
        except TypeError:   # not paths (inputs as given, before the run stored them)
            pass
    run_dir = getattr(source, "run_dir", None)
    return run_inputs.paths(run_dir) if run_dir is not None else {}


class InputsView(w.HBox):
    """One labelled tile per input (``inputs``: ``name -> files``); hidden while there are none.

    ``display_width`` is a tile's width in pixels (tiny test runs are 32 px: scaled up).
    """

    def __init__(self, inputs: Mapping[str, list[Path]] | None = None, *, display_width: int = 128,
                 autoplay: bool = True, **kwargs: Any) -> None:
        self.display_width, self.autoplay = display_width, autoplay
        self.shown: dict[str, list[Path]] = {}
        super().__init__(layout=w.Layout(gap="8px", align_items="flex-start", flex_flow="row wrap"), **kwargs)
        self.add_class("wan-nb-inputs")
        self.layout.display = "none"
        self.show(inputs or {})

    def show(self, inputs: Mapping[str, list[Path]]) -> None:
        """Draw ``inputs`` (nothing is sent again when they did not change)."""
        order = {name: i for i, name in enumerate(run_inputs.INPUT_NAMES)}   # the same order everywhere
        names = sorted((n for n, files in inputs.items() if files), key=lambda n: (order.get(n, len(order)), n))
        inputs = {name: [Path(p) for p in inputs[name]] for name in names}
        if inputs == self.shown:
            return
        self.shown = inputs
        self.children = [self._tile(name, files, inputs) for name, files in inputs.items()]
        self.layout.display = "" if inputs else "none"

    def _tile(self, name: str, files: list[Path], every: Mapping[str, Any]) -> w.VBox:
        caption = w.HTML(f"<span class='wan-nb-input-label' style='font-size:11px;opacity:.75'>"
                         f"{html.escape(run_inputs.label(name, every))}</span>")
        width = self.display_width if len(files) == 1 else max(48, self.display_width // 2)
        media = w.HBox([self._media(path, width) for path in files], layout=w.Layout(gap="4px"))
        tile = w.VBox([media, caption], layout=w.Layout(align_items="center"))
        tile.add_class("wan-nb-input")
        tile.input_name = name
        return tile

    def _media(self, path: Path, width: int) -> w.Widget:
        try:
            size = path.stat().st_size
            if size > MAX_EMBED_BYTES:
                raise ValueError(f"{path.name} is {size / 2**20:.0f} MB: open it from the run folder")
            if path.suffix.lower() == ".mp4":
                return VideoPlayer.from_file(path, display_width=width, autoplay=self.autoplay)
            picture = w.Image(value=path.read_bytes(), format="png", width=width)
            picture.add_class("wan-nb-input-image")
            return picture
        except (OSError, ValueError) as exc:
            return w.HTML(f"<i style='font-size:11px'>{html.escape(str(exc) or path.name)}</i>")
