"""Side-by-side videos labelled by what differs between them: the view for sweeps.

Labels hold only the parameters that vary across the set (prompt, seed, LoRA weights, steps …):
in a seed sweep every card says ``seed=…`` and nothing else.
"""

from __future__ import annotations

import html
import threading
from typing import Any, Iterable, Mapping, Sequence

import ipywidgets as w

from wan_nb.protocol.events import Event
from wan_nb.core.lora_schedule import describe as describe_weight  # a LoRA schedule as a short label
from wan_nb.models.guidance import describe as describe_guidance
from .panel import ProgressPanel
from .video import ResultView

__all__ = ["differing_labels", "format_label", "Gallery", "SweepView", "to_results"]

# Parameters worth comparing, in the order labels show them.
COMPARED = ("prompt", "negative_prompt", "seed", "steps", "guidance_scale", "guidance_scale_2", "size",
            "num_frames", "fps", "model", "cache")


def _flatten(result: Any) -> dict[str, Any]:
    params = dict(getattr(result, "params", {}) or {})
    flat: dict[str, Any] = {key: params.get(key) for key in COMPARED if key in params}
    flat["seed"] = getattr(result, "seed", params.get("seed"))
    if "height" in params or "width" in params:
        flat["size"] = f"{params.get('width')}x{params.get('height')}"
    if getattr(result, "model", None) is not None:
        flat["model"] = result.model
    for name, weight in (params.get("loras") or {}).items():
        flat[f"lora {name}"] = weight if isinstance(weight, (int, float)) else describe_weight(weight)  # a schedule
    if "guidance" in params:  # the method and its options as one label: "apg (eta=0)", "classic CFG"
        flat["guidance"] = describe_guidance(params["guidance"], params.get("guidance_options"))
    return flat


def differing_labels(results: Sequence[Any]) -> list[dict[str, Any]]:
    """For each result, the parameters whose value is not the same across all of them.

    A LoRA used by some results and not others counts as weight 0 where it is missing.
    """
    flats = [_flatten(r) for r in results]
    keys: list[str] = []
    for flat in flats:
        keys += [k for k in flat if k not in keys]
    lora_keys = {k for k in keys if k.startswith("lora ")}
    for flat in flats:
        for key in lora_keys:
            flat.setdefault(key, 0)
    varying = [k for k in keys if len({repr(f.get(k)) for f in flats}) > 1]
    return [{k: flat.get(k) for k in varying} for flat in flats]


def format_label(label: Mapping[str, Any], index: int) -> str:
    if not label:
        return f"#{index + 1}"
    parts = []
    for key, value in label.items():
        if key == "loras" and isinstance(value, Mapping):
            parts += [f"lora {n}={describe_weight(v)}" for n, v in value.items()] or ["no LoRA"]
        elif isinstance(value, float):
            parts.append(f"{key}={value:g}")
        elif key == "prompt":
            parts.append(f"“{value}”")
        else:
            parts.append(f"{key}={value}")
    return " · ".join(parts)


def to_results(items: Any, timeout: float | None = None) -> list[Any]:
    """Accept Results, Tasks (waited for) or a Sweep; return Results."""
    if hasattr(items, "results") and callable(items.results):
        return list(items.results(timeout))
    results = []
    for item in items:
        if hasattr(item, "video_path"):
            results.append(item)
        elif hasattr(item, "result") and callable(item.result):
            results.append(item.result(timeout))
        else:
            raise TypeError(f"gallery: {type(item).__name__} is not a Result, a Task or a Sweep")
    return results


def card_columns(columns: int | None, display_width: int) -> str:
    """CSS grid columns for cards of videos ``display_width`` px wide: as many as the window has
    room for, wrapping onto new rows (a fixed count overflowed narrow windows sideways); a given
    ``columns`` still fixes the count."""
    if columns:
        return f"repeat({columns}, max-content)"
    return f"repeat(auto-fill, minmax({display_width + CARD_PADDING}px, 1fr))"


# A card's border and padding around its video (see _card).
CARD_PADDING = 14


def _card(label_html: str, body: w.Widget) -> w.VBox:
    card = w.VBox([w.HTML(label_html), body],
                  layout=w.Layout(border="1px solid var(--jp-border-color2, #ddd)", padding="6px", min_width="0"))
    card.add_class("wan-nb-card")
    return card


def _label_html(text: str) -> str:
    return (f"<div class='wan-nb-label' style='font-weight:bold;font-size:12px;overflow-wrap:anywhere'>"
            f"{html.escape(text)}</div>")


class Gallery(w.GridBox):
    """A grid of finished videos, each labelled by its differing parameters."""

    def __init__(self, results: Iterable[Any], *, labels: Sequence[Mapping[str, Any]] | None = None,
                 columns: int | None = None, display_width: int = 192, **kwargs: Any) -> None:
        self.results = to_results(results)
        if not self.results:
            raise ValueError("gallery: give at least one Result (or a Sweep / list of Tasks)")
        self.labels = list(labels) if labels is not None else differing_labels(self.results)
        if len(self.labels) != len(self.results):
            raise ValueError(f"gallery: {len(self.labels)} labels for {len(self.results)} results")
        self.label_texts = [format_label(label, i) for i, label in enumerate(self.labels)]
        cards = [_card(_label_html(text), ResultView(result, show_params=False, display_width=display_width))
                 for text, result in zip(self.label_texts, self.results)]
        super().__init__(cards, layout=w.Layout(grid_template_columns=card_columns(columns, display_width),
                                                grid_gap="8px"), **kwargs)
        self.add_class("wan-nb-gallery")

    def __repr__(self) -> str:
        return f"Gallery({len(self.results)} videos: {'; '.join(self.label_texts)})"


class SweepView(w.GridBox):
    """A sweep while it runs: one card per task, a compact progress bar that becomes the video."""

    def __init__(self, sweep: Any, *, columns: int | None = None, display_width: int = 192,
                 **kwargs: Any) -> None:
        self.sweep = sweep
        self.label_texts = [format_label(label, i) for i, label in enumerate(sweep.labels)]
        self.display_width = display_width
        self._lock = threading.Lock()
        self.cards: list[w.VBox] = []
        self.panels: list[ProgressPanel] = []
        self._offs = []
        for text, task in zip(self.label_texts, sweep.tasks):
            panel = ProgressPanel(compact=True)
            card = _card(_label_html(text), panel)
            self.cards.append(card)
            self.panels.append(panel)
        super().__init__(self.cards, layout=w.Layout(grid_template_columns=card_columns(columns, display_width),
                                                     grid_gap="8px"), **kwargs)
        self.add_class("wan-nb-gallery")
        for index, (panel, task) in enumerate(zip(self.panels, sweep.tasks)):
            panel.follow(task)
            self._offs.append(task.subscribe(lambda event, i=index: self._on_event(i, event), replay=True))

    def _on_event(self, index: int, event: Event) -> None:
        if not event.is_terminal:
            return
        task = self.sweep.tasks[index]
        task.wait(5.0)
        if task.status != "completed":
            return  # the compact panel already shows how it failed or was cancelled
        view = ResultView(task.result(), show_params=False, display_width=self.display_width)
        card = self.cards[index]
        with self._lock:
            card.children = (card.children[0], view)

    def __repr__(self) -> str:
        return f"SweepView({len(self.cards)} tasks: {'; '.join(self.label_texts)})"
