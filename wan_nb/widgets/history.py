"""Past runs as a browsable gallery: filter by prompt text, model, status and date; rerun any card.

``wan_nb.history()`` returns a list that displays itself through :func:`show_history`. The
gallery queries the runs folder's index again whenever a filter changes (milliseconds), so runs
finished since it was shown appear on the next change or on Refresh. Only the cards of the
current page load their videos.
"""

from __future__ import annotations

import datetime as dt
import html
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

import ipywidgets as w

from wan_nb.core.lora_schedule import describe as describe_weight
from wan_nb.protocol.statuses import FINISHED_STATUSES, RESUMABLE
from wan_nb.runs.history import RunList, format_table, history
from .grid import card_columns
from .inputs import InputsView
from .resume_control import error_html, resume_with
from .video import VideoPlayer

__all__ = ["HistoryGallery", "show_history"]

ALL = "all"
STATUSES = (ALL, *FINISHED_STATUSES, "running", "queued")
STATUS_COLOR = {"completed": "#2e7d32", "failed": "#c62828", "cancelled": "#e65100", "lost": "#777",
                "running": "#0072b2", "queued": "#777", "stopped": "#8e6c00", "interrupted": "#8e6c00"}


def show_history(runs: RunList, stream: TextIO | None = None) -> Any:
    """Display ``runs`` as a gallery in a notebook, as a table elsewhere."""
    from ._env import display as _display, widgets_available

    if widgets_available():
        return _display(HistoryGallery(runs))
    (stream or sys.stdout).write(format_table(runs) + "\n")
    return None


def _caption(run: Any) -> str:
    prompt = run.prompt if len(run.prompt) <= 80 else run.prompt[:77] + "…"
    color = STATUS_COLOR.get(run.status, "#777")
    took = "" if run.duration_s is None else f" · {run.duration_s:.1f} s"
    when = (run.created_at or "").replace("T", " ").rstrip("Z")
    # A schedule reads as the grid labels write it (1→0.2, high 1 / low 0.3), not as its JSON form.
    loras = ", ".join(f"{n}={describe_weight(v)}" for n, v in (run.params.get("loras") or {}).items())
    status = run.status  # a run that kept a checkpoint: "stopped at step 3/8"
    if run.status in RESUMABLE and run.checkpoint_step:
        status += f" at step {run.checkpoint_step}/{run.params.get('steps', '?')}"
    return (f"<div style='font-size:12px;max-width:220px'><b>{html.escape(prompt)}</b><br>"
            f"<span style='color:{color}'>{html.escape(status)}</span> · {html.escape(str(run.model))}"
            f" · seed {run.seed}{took}<br><span style='opacity:.7'>{html.escape(when)}"
            f"{' · LoRA ' + html.escape(loras) if loras else ''}</span></div>")


class HistoryGallery(w.VBox):
    """A page of run cards (video, caption, Rerun) under a filter bar.

    ``generator`` reruns cards whose model it runs; other cards get a Generator of their own
    model (made on the first Rerun, kept for the next) writing to the same runs folder.
    """

    def __init__(self, runs: RunList | None = None, *, runs_dir: str | Path | None = None,
                 generator: Any = None, page_size: int = 12, columns: int | None = None,
                 display_width: int = 160, **kwargs: Any) -> None:
        self.runs_dir = Path(runs_dir) if runs_dir is not None else getattr(runs, "runs_dir", None)
        self.generator = generator
        self.page_size, self.display_width = page_size, display_width
        self.page = 0
        self.runs: list[Any] = list(runs) if runs is not None else []
        self.tasks: list[Any] = []           # reruns started from this gallery
        self._generators: dict[str, Any] = {}
        self._lock = threading.Lock()
        models = sorted({str(r.model) for r in history(self.runs_dir) if r.model}) if self.runs_dir else []
        layout = w.Layout(width="auto")
        self.prompt = w.Text(placeholder="prompt contains…", continuous_update=False, layout=w.Layout(width="200px"))
        self.model = w.Dropdown(options=[ALL, *models], value=ALL, description="model", layout=layout)
        self.status = w.Dropdown(options=STATUSES, value=ALL, description="status", layout=layout)
        self.since = w.DatePicker(description="from", layout=layout)
        self.until = w.DatePicker(description="to", layout=layout)
        self._start_from(getattr(runs, "filters", None) or {})
        self.refresh = w.Button(description="Refresh", icon="refresh", layout=layout)
        self.previous = w.Button(description="◀", layout=w.Layout(width="36px"))
        self.next = w.Button(description="▶", layout=w.Layout(width="36px"))
        self.count = w.HTML()
        self.grid = w.GridBox(layout=w.Layout(grid_template_columns=card_columns(columns, display_width),
                                              grid_gap="8px"))
        self.output = w.VBox()               # the progress of reruns
        for control in (self.prompt, self.model, self.status, self.since, self.until):
            control.observe(lambda _change: self._query(), names="value")
        self.refresh.on_click(lambda _b: self._query())
        self.previous.on_click(lambda _b: self._turn(-1))
        self.next.on_click(lambda _b: self._turn(+1))
        bar = w.HBox([self.prompt, self.model, self.status, self.since, self.until, self.refresh],
                     layout=w.Layout(flex_flow="row wrap", gap="4px"))
        pager = w.HBox([self.previous, self.count, self.next], layout=w.Layout(align_items="center", gap="6px"))
        super().__init__([bar, pager, self.grid, self.output], **kwargs)
        self.add_class("wan-nb-history")
        self.cards: list[w.VBox] = []
        self._render()

    # -- filters and pages ---------------------------------------------------------------------
    def _start_from(self, asked: dict[str, Any]) -> None:
        """Show the filters ``history()`` was called with, so changing one keeps the others."""
        if isinstance(asked.get("prompt"), str):
            self.prompt.value = asked["prompt"]
        if isinstance(asked.get("model"), str):
            if asked["model"] not in self.model.options:
                self.model.options = [*self.model.options, asked["model"]]
            self.model.value = asked["model"]
        if asked.get("status") in STATUSES:
            self.status.value = asked["status"]
        for name, picker in (("since", self.since), ("until", self.until)):
            value = asked.get(name)
            if isinstance(value, dt.datetime):
                value = value.date()
            elif isinstance(value, str) and len(value.strip()) == 10:
                try:
                    value = dt.date.fromisoformat(value.strip())
                except ValueError:
                    value = None
            if isinstance(value, dt.date):
                picker.value = value

    def filters(self) -> dict[str, Any]:
        """The current filters, as ``wan_nb.history`` takes them."""
        out: dict[str, Any] = {}
        if self.prompt.value.strip():
            out["prompt"] = self.prompt.value.strip()
        if self.model.value != ALL:
            out["model"] = self.model.value
        if self.status.value != ALL:
            out["status"] = self.status.value
        if isinstance(self.since.value, dt.date):
            out["since"] = self.since.value
        if isinstance(self.until.value, dt.date):
            out["until"] = self.until.value
        return out

    def _query(self) -> None:
        if self.runs_dir is None:
            return
        self.runs = list(history(self.runs_dir, **self.filters()))
        self.page = 0
        self._render()

    def _turn(self, step: int) -> None:
        pages = max(1, -(-len(self.runs) // self.page_size))
        self.page = min(max(self.page + step, 0), pages - 1)
        self._render()

    def _render(self) -> None:
        start = self.page * self.page_size
        shown = self.runs[start:start + self.page_size]
        pages = max(1, -(-len(self.runs) // self.page_size))
        self.count.value = (f"<span style='font-size:12px'>{len(self.runs)} run(s) · page {self.page + 1}/{pages}"
                            "</span>")
        self.previous.disabled, self.next.disabled = self.page == 0, self.page >= pages - 1
        self.cards = [self._card(run) for run in shown]
        self.grid.children = self.cards

    def _card(self, run: Any) -> w.VBox:
        body: w.Widget
        if run.video_path is not None and run.video_path.is_file():
            try:
                body = VideoPlayer.from_file(run.video_path, filename=f"{run.task_id}.mp4",
                                             display_width=self.display_width, autoplay=False)
            except (OSError, ValueError) as exc:
                body = w.HTML(f"<i>{html.escape(str(exc))}</i>")
        else:
            body = w.HTML(f"<div style='width:{self.display_width}px;opacity:.6;font-size:12px'>"
                          f"<i>no video ({html.escape(run.error or run.status)})</i></div>")
        button = w.Button(description="Rerun", icon="repeat", tooltip="generate this recipe again",
                          layout=w.Layout(width="auto"))
        button.on_click(lambda _b, r=run: self.rerun(r))
        # Where a rerun that cannot start says why, on the card that was clicked.
        problem = w.VBox(layout=w.Layout(max_width=f"{self.display_width + 40}px"))
        problem.add_class("wan-nb-card-problem")
        buttons: list[w.Widget] = [button]
        if run.status in RESUMABLE:  # stopped / interrupted with a checkpoint: finish it
            resume = w.Button(description="Resume", icon="play", button_style="primary", layout=w.Layout(width="auto"),
                              tooltip=f"finish this run from its checkpoint (step {run.checkpoint_step})")
            resume.on_click(lambda _b, r=run: self.resume(r))
            resume.add_class("wan-nb-card-resume")
            buttons.append(resume)
        parts = [body, w.HTML(_caption(run)), w.HBox(buttons, layout=w.Layout(gap="4px")) if len(buttons) > 1
                 else button, problem]
        if run.inputs:   # what the run started from (first/last frame, control video), under its video
            parts.insert(1, InputsView(run.inputs, display_width=max(48, self.display_width // 2), autoplay=False))
        card = w.VBox(parts,
                      layout=w.Layout(border="1px solid var(--jp-border-color2, #ddd)", padding="6px", min_width="0"))
        card.add_class("wan-nb-card")
        card.run, card.problem = run, problem
        return card

    # -- rerun -----------------------------------------------------------------------------------
    def _generator_for(self, model: str) -> Any:
        if self.generator is not None and self.generator.model == model:
            return self.generator
        with self._lock:
            gen = self._generators.get(model)
            if gen is None:
                from ..generator import Generator

                gen = self._generators[model] = Generator(model=model, runs_dir=self.runs_dir)
            return gen

    def rerun(self, run: Any, **overrides: Any) -> Any:
        """Queue ``run``'s recipe again (``overrides`` as ``gen.rerun`` takes them); its progress
        shows under the gallery. Returns the Task, or None when the recipe cannot be run: the
        reason then shows on the run's card, with a button for the fix where there is one."""
        from wan_nb.compose.rerun import rerun_args

        card = next((c for c in self.cards if c.run is run), None)
        recipe: dict[str, Any] = {}
        try:
            recipe = run.recipe()
            gen = self._generator_for(recipe["model"]["name"])
            prompt, kwargs = rerun_args(gen, recipe, **overrides)
            task = gen.submit(prompt, **kwargs)
        except (ValueError, OSError, TypeError) as exc:
            self.output.children = (w.HTML(f"<div style='color:#c62828;font-size:12px'>Rerun of "
                                           f"{html.escape(run.task_id)}: {html.escape(str(exc))}</div>"),)
            if card is not None:
                card.problem.children = self._problem(run, exc, recipe, overrides)
            return None
        return self._started(card, task)

    def resume(self, run: Any) -> Any:
        """Finish a stopped or interrupted ``run`` from its checkpoint (``gen.submit_resume``): a new
        task linked to it, whose progress shows under the gallery. Returns the Task, or None when the
        run cannot be resumed: the reason then shows on the run's card."""
        card = next((c for c in self.cards if c.run is run), None)
        try:
            task = resume_with(self._generator_for(run.recipe()["model"]["name"]), run)
        except (ValueError, OSError, TypeError, KeyError) as exc:
            if card is not None:
                note = w.HTML(error_html(f"Cannot resume: {exc}"))
                note.add_class("wan-nb-card-error")
                card.problem.children = (note,)
            return None
        return self._started(card, task)

    def _started(self, card: Any, task: Any) -> Any:
        from .panel import ProgressPanel

        if card is not None:
            card.problem.children = ()
        self.tasks.append(task)
        self.output.children = (ProgressPanel(task),)
        return task

    def _problem(self, run: Any, exc: Exception, recipe: dict[str, Any],
                 overrides: dict[str, Any]) -> tuple[w.Widget, ...]:
        """The error, and for a LoRA the recipe can leave out, a button that reruns without it
        (the message's ``loras={name: 0}`` hint is code; a card's user needs a button)."""
        text = str(exc)
        fixes: list[w.Widget] = []
        for entry in recipe.get("loras") or ():
            name = str(entry.get("name"))
            hint = f"rerun with loras={{{name!r}: 0}}"
            if hint not in text:
                continue
            label = f"Rerun without LoRA {name!r}"
            text = text.replace(hint, f"click “{label}”")
            without = {**(overrides.get("loras") or {}), name: 0.0}
            fix = w.Button(description=label, icon="repeat", layout=w.Layout(width="auto"),
                           tooltip=f"the same recipe with {name!r} at weight 0")
            fix.on_click(lambda _b, r=run, o={**overrides, "loras": without}: self.rerun(r, **o))
            fix.add_class("wan-nb-card-fix")
            fixes.append(fix)
        note = w.HTML(f"<div style='color:#c62828;font-size:12px;overflow-wrap:anywhere'>{html.escape(text)}</div>")
        note.add_class("wan-nb-card-error")
        return (note, *fixes)

    def __repr__(self) -> str:
        return f"HistoryGallery({len(self.runs)} runs, filters={self.filters()})"
