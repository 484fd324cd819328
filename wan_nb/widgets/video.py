"""A finished video in the notebook: a player, a download link and the parameters that made it.

The MP4 is sent to the browser once, as a binary widget buffer (no base64, no server route:
the kernel cannot rely on the server extension being installed). The browser turns it into a
``blob:`` URL used by both the player and the download link.
"""

from __future__ import annotations

import html
from typing import Any, Mapping

import ipywidgets as w

from .inputs import InputsView, inputs_of
from .player import MAX_EMBED_BYTES, VideoPlayer
from wan_nb.models.guidance import describe as describe_guidance

__all__ = ["VideoPlayer", "ResultView", "params_table", "MAX_EMBED_BYTES"]

def _format(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}"
                         for k, v in value.items()) or "none"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def params_table(result: Any) -> str:
    """The run's parameters as a small HTML table (what you need to make it again)."""
    p = dict(result.params)
    rows = [("prompt", p.get("prompt", "")), ("seed", result.seed), ("model", result.model),
            ("size", f"{p.get('width')}×{p.get('height')}, {p.get('num_frames')} frames @ {p.get('fps')} fps"),
            ("steps", p.get("steps")), ("guidance", p.get("guidance_scale"))]
    if p.get("negative_prompt"):
        rows.insert(1, ("negative", p["negative_prompt"]))
    if p.get("loras"):
        rows.append(("LoRAs", p["loras"]))
    if p.get("cache"):
        rows.append(("cache", p["cache"]))
    if p.get("guidance"):
        rows.append(("method", describe_guidance(p["guidance"], p.get("guidance_options"))))
    rows += [("took", f"{result.duration_s:.1f} s"), ("file", str(result.video_path))]
    cells = "".join(f"<tr><th style='text-align:left;padding-right:8px;opacity:.7'>{html.escape(k)}</th>"
                    f"<td style='text-align:left'>{html.escape(_format(v))}</td></tr>" for k, v in rows)
    return f"<table class='wan-nb-params' style='font-size:12px'>{cells}</table>"


class ResultView(w.HBox):
    """A :class:`~wan_nb.Result` as its inputs (if any) + player + download link + parameter table."""

    def __init__(self, result: Any, *, show_params: bool = True, display_width: int = 256,
                 **kwargs: Any) -> None:
        self.result = result
        filename = f"{result.task_id}.mp4"
        try:
            player: w.Widget = VideoPlayer.from_file(result.video_path, filename=filename,
                                                     display_width=display_width)
        except (FileNotFoundError, ValueError) as exc:
            player = w.HTML(f"<i>{html.escape(str(exc))}</i>")
        self.inputs = InputsView(inputs_of(result), display_width=display_width // 2)
        children = [self.inputs, player] if self.inputs.shown else [player]  # what it was made from, first
        if show_params:
            children.append(w.HTML(params_table(result)))
        super().__init__(children, layout=w.Layout(align_items="flex-start", gap="12px"), **kwargs)
        self.add_class("wan-nb-result")
        self.player = player

    def __repr__(self) -> str:
        return f"ResultView({self.result!r})"
