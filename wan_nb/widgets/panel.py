"""The progress panel: what a running task is doing, live, with Cancel and Pause buttons.

Events arrive on bus subscriber threads; the panel folds them into a :class:`TaskState` and
redraws through a :class:`Throttle`, so the browser sees at most ``max_rate`` updates a second
however fast the pipeline steps, and always the final state. Generation runs on the
generator's worker thread; the Cancel and Pause/Resume buttons (:class:`CancelButton`) also
reach it through the Jupyter server while a foreground ``generate`` keeps the kernel busy.

``ProgressPanel(task)`` follows one task; ``GeneratorPanel(gen)`` follows whichever task of a
generator is running, keeping one memory chart across tasks, and shows the queue (move a task
up or down, remove it, pause the queue).
"""

from __future__ import annotations

import base64
import html
import threading
import time
from pathlib import Path
from typing import Any

import ipywidgets as w

from wan_nb.cli.console import format_seconds
from wan_nb.protocol.events import Event, EventType
from wan_nb.protocol.statuses import ENDING_STAGES
from wan_nb.runs.layout import TASK_FILE
from ._state import TaskState, format_rate, parse_timestamp
from ._timeline import timeline_html
from ._throttle import Throttle
from .cancel_button import CancelButton
from .inputs import InputsView, inputs_of
from .resume_control import ResumeControl
from .vram_plot import VramPlot

__all__ = ["ProgressPanel", "GeneratorPanel", "QueueView"]

BAR_STYLE = {"completed": "success", "failed": "danger", "cancelled": "warning", "stopped": "warning",
             "interrupted": "warning"}
STATUS_COLOR = {"queued": "#777", "running": "#0072b2", "completed": "#2e7d32", "failed": "#c62828",
                "cancelled": "#e65100", "waiting": "#777", "paused": "#8e6c00", "stopped": "#8e6c00",
                "interrupted": "#8e6c00"}


def _seconds(value: float | None) -> str:
    if value is None:
        return "--:--"
    if value < 10:
        return f"{value:.1f} s"
    return format_seconds(value)


class ProgressPanel(w.VBox):
    """Live progress of one task. ``compact=True`` keeps only the bar and the message (galleries)."""

    def __init__(self, task: Any = None, *, compact: bool = False, memory: bool = True,
                 max_rate: float = 10.0, **kwargs: Any) -> None:
        self.compact = compact
        self.state = TaskState()
        self._task: Any = None
        self._unsubscribe: Any = None
        self._lock = threading.RLock()   # guards state against the subscriber and timer threads
        self._samples: list[dict[str, Any]] = []
        self._memory_kind, self._memory_label = "", ""
        self._samples_changed = False
        self._past_bands: list[dict[str, Any]] = []
        self.throttle = Throttle(self._render, rate=max_rate)

        self.title = w.HTML()
        # In a gallery card the bar shrinks with the card (cards wrap to the window's width).
        bar_layout = w.Layout(width="auto", flex="1 1 auto", min_width="60px") if compact \
            else w.Layout(width="420px", flex="0 0 auto")
        self.overall = w.FloatProgress(value=0.0, min=0.0, max=100.0, description="" if compact else "Overall",
                                       bar_style="info", layout=bar_layout)
        self.overall.add_class("wan-nb-overall")
        self.overall_text = w.HTML("0 %")
        self.overall_text.add_class("wan-nb-overall-text")
        self.steps = w.IntProgress(value=0, min=0, max=1, description="Steps",
                                   bar_style="info", layout=w.Layout(width="420px", flex="0 0 auto"))
        self.steps.add_class("wan-nb-steps")
        self.steps_text = w.HTML("")
        self.timeline = w.HTML()
        self.message = w.HTML()
        self.message.add_class("wan-nb-message")
        self.timing = w.HTML()
        self.cancel_button = CancelButton()
        self.cancel_button.add_class("wan-nb-cancel")
        self.cancel_button.on_click(self._on_cancel_click)
        self.pause_button = CancelButton(action="pause", description="Pause", pending="Pausing…", icon="pause",
                                         button_style="", tooltip="Hold after the current denoising step")
        self.pause_button.add_class("wan-nb-pause")
        self.pause_button.on_click(self._on_pause_click)
        self.memory = VramPlot() if memory and not compact else None
        # The newest live preview (an animated WebP of the whole clip), hidden until one arrives.
        self.preview = w.Image(format="webp", layout=w.Layout(display="none", width="128px"))
        self.preview.add_class("wan-nb-preview")
        self._preview: tuple[str, bytes] | None = None
        self._preview_changed = False
        # What the run starts from (first/last frame, control video), once its folder lists it.
        self.inputs = InputsView(display_width=96) if not compact else None
        self._inputs_key: tuple[Any, ...] | None = None

        # Pause then Cancel, the order the Lab sidebar uses too; hidden once the task has finished.
        self.steering = w.HBox([self.pause_button, self.cancel_button])
        self.steering.add_class("wan-nb-steering")
        # A finished run shows no steering, but a stopped or interrupted one can be finished: Resume.
        self.resume = ResumeControl(self._follow_resumed)

        rows: list[w.Widget] = [self.title, w.HBox([self.overall, self.overall_text])]
        if not compact:
            text = w.VBox([w.HBox([self.steps, self.steps_text]), self.timeline, self.message,
                           w.HBox([self.timing, self.steering, self.resume],
                                  layout=w.Layout(justify_content="space-between", align_items="center"))],
                          layout=w.Layout(flex="1 1 auto"))
            rows += [w.HBox([text, self.inputs, self.preview], layout=w.Layout(align_items="flex-start", gap="8px"))]
            if self.memory is not None:
                rows.append(self.memory)
        else:
            rows.append(self.message)
        super().__init__(rows, **kwargs)
        self.add_class("wan-nb-panel")
        if task is not None:
            self.follow(task)
        else:
            self._render()

    def __repr__(self) -> str:
        s = self.state
        return f"{type(self).__name__}(task={s.task_id!r}, status={s.status!r}, progress={s.progress:.0f}%)"

    # -- wiring -------------------------------------------------------------------------------
    @property
    def task(self) -> Any:
        return self._task

    def follow(self, task: Any) -> None:
        """Show ``task`` from its first event (replayed) on; the memory chart keeps its history."""
        self._detach()
        with self._lock:
            if self.state.task_id is not None:
                self._archive_bands()
            self._task = task
            self.state = TaskState.for_task(task)
            self.cancel_button.description = "Cancel"
            self._point_buttons_at(task.id)
        self._unsubscribe = task.subscribe(self.handle_event, replay=True)

    def close(self) -> None:
        self._detach()
        self.throttle.cancel()
        super().close()

    def _detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def _point_buttons_at(self, task_id: str) -> None:
        self.cancel_button.task_id = self.pause_button.task_id = task_id

    def _on_pause_click(self, _button: Any) -> None:
        task = self._task
        if task is None or not hasattr(task, "pause"):
            return
        if self.state.status == "paused" or getattr(task, "pause_requested", False):
            task.resume()
        else:
            task.pause()
        self.throttle.request()

    def _follow_resumed(self, task: Any) -> None:
        """After Resume: the new task (linked to the stopped one) is the one shown."""
        self.follow(task)

    def _on_cancel_click(self, _button: Any) -> None:
        task = self._task
        if task is None or not task.cancel():
            return
        with self._lock:
            self.cancel_button.disabled = True
            self.cancel_button.description = "Cancelling…"

    # -- events -------------------------------------------------------------------------------
    def handle_event(self, event: Event) -> None:
        """Fold one event in and schedule a redraw (called on a subscriber thread)."""
        with self._lock:
            if event.type == EventType.VRAM_MONITORING:
                self._add_sample(event)
            elif event.seq > self.state.last_seq:
                self._note(event)
            if not self.state.apply(event):
                return
            final = self.state.finished
        if final:
            self.throttle.flush()  # the end is always drawn, before this callback returns
        else:
            self.throttle.request()

    def _add_sample(self, event: Event) -> None:
        at = parse_timestamp(event.timestamp)
        if self._samples and at <= self._samples[-1]["t"]:
            return  # a replayed reading already on the chart
        self._samples.append(VramPlot.reading(at, event.data))
        if self.memory is not None and len(self._samples) > self.memory.max_samples:
            del self._samples[: len(self._samples) - self.memory.max_samples]
        self._memory_kind, self._memory_label = VramPlot.describe(event.data)
        self._samples_changed = True

    def _note(self, event: Event) -> None:
        """What the panel keeps beside the task state: the newest preview."""
        if event.type == EventType.PREVIEW:
            self._add_preview(event)

    def _add_preview(self, event: Event) -> None:
        mime = str(event.data.get("mime", "image/webp"))
        try:
            self._preview = (mime.split("/", 1)[1], base64.b64decode(event.data["data_b64"]))
        except (KeyError, ValueError, IndexError):
            return  # a malformed preview is not worth failing the panel for
        self._preview_changed = True

    # -- drawing ------------------------------------------------------------------------------
    def _render(self) -> None:
        with self._lock:
            s = self.state
            style = BAR_STYLE.get(s.status, "info")
            percent = 100.0 if s.status == "completed" else round(s.progress, 1)
            self._set(self.overall, value=percent, bar_style=style)
            self._set(self.overall_text, value=f"<b>{percent:.0f} %</b>")
            self._set(self.title, value=self._title_html(s))
            self._set(self.message, value=self._message_html(s))
            if self.compact:
                return
            total = max(s.total_steps, 1)
            self._set(self.steps, max=total, value=min(s.step, total), bar_style=style)
            rate = format_rate(s.steps_per_second()) if not s.finished else ""
            self._set(self.steps_text, value=f"{s.step}/{s.total_steps}" + (f" · {rate}" if rate else ""))
            self._set(self.timeline, value=timeline_html(s))
            left = "" if s.finished else f" · left {_seconds(s.eta)}"
            self._set(self.timing, value=f"<span class='wan-nb-timing'>elapsed {_seconds(s.elapsed())}{left}</span>")
            can_cancel = self._task is not None and not s.finished and s.status != "waiting"
            if not can_cancel:
                self._set(self.cancel_button, disabled=True, button_style="",
                          description="Cancel" if s.status != "cancelled" else "Cancelled")
            elif not (self._task.cancel_requested if hasattr(self._task, "cancel_requested") else False):
                self._set(self.cancel_button, disabled=False, button_style="warning", description="Cancel")
            self._draw_pause_button(can_cancel and hasattr(self._task, "pause"))
            # A finished run cannot be steered: its buttons go, rather than stay greyed out.
            self._set(self.steering.layout, display="none" if s.finished else "")
            generator = getattr(self, "generator", None) or getattr(self._task, "generator", None)
            self.resume.show(generator if s.resumable else None, self._task, s.step, s.total_steps)
            self._draw_inputs()
            if self._preview_changed and self._preview is not None:
                self._preview_changed = False
                fmt, data = self._preview
                self._set(self.preview, format=fmt, value=data)
                self.preview.layout.display = ""
            if self.memory is not None and (self._samples_changed or s.stages):
                self._samples_changed = False
                self.memory.set_series(list(self._samples), self._bands(), self._memory_kind, self._memory_label)

    def _draw_inputs(self) -> None:
        """Show the followed task's inputs: read again only when its ``task.json`` changed."""
        run_dir = getattr(self._task, "run_dir", None)
        try:
            version = (Path(run_dir) / TASK_FILE).stat().st_mtime_ns if run_dir is not None else None
        except OSError:
            version = None
        key = (self.state.task_id, version)
        if key != self._inputs_key:
            self._inputs_key = key
            self.inputs.show(inputs_of(self._task) if version is not None else {})

    def _draw_pause_button(self, can_pause: bool) -> None:
        holding = self.state.status == "paused" or bool(getattr(self._task, "pause_requested", False))
        if holding:
            self._set(self.pause_button, action="resume", description="Resume", pending="Resuming…", icon="play",
                      tooltip="Go on from the step it holds at")
        else:
            self._set(self.pause_button, action="pause", description="Pause", pending="Pausing…", icon="pause",
                      tooltip="Hold after the current denoising step")
        self._set(self.pause_button, disabled=not can_pause)

    @staticmethod
    def _set(widget: w.Widget, **values: Any) -> None:
        """Assign only what changed: an unchanged trait sends nothing to the browser."""
        changed = {k: v for k, v in values.items() if getattr(widget, k) != v}
        if not changed:
            return
        with widget.hold_sync():
            for key, value in changed.items():
                setattr(widget, key, value)

    def _title_html(self, s: TaskState) -> str:
        if s.task_id is None:
            return "<i>No generation yet</i>"
        prompt = s.prompt if len(s.prompt) <= 90 else s.prompt[:87] + "…"
        color = STATUS_COLOR.get(s.status, "#777")
        label = s.status if s.queue_position is None else f"{s.status} (#{s.queue_position + 1})"
        if s.memory_released:   # task.pause(release_memory=True)
            label += " · memory released"
        elif s.resumable:
            label += f" at step {s.step}/{s.total_steps}"
        return (f"<div class='wan-nb-title'><b>{html.escape(prompt)}</b> "
                f"<span style='color:{color}' class='wan-nb-status' data-status='{s.status}'>● {label}</span> "
                f"<code style='font-size:80%;opacity:.7'>{html.escape(s.task_id)}</code></div>")

    def _message_html(self, s: TaskState) -> str:
        text = html.escape(s.message or "")
        if s.status == "failed":
            return f"<span style='color:#c62828'>{text}</span>"
        if s.status == "completed" and s.output_path:
            path = s.output_path.replace("\\", "/")
            short = "/".join(path.split("/")[-2:])  # <task id>/video.mp4; the full path on hover
            return f"Done → <code title='{html.escape(path)}'>…/{html.escape(short)}</code>"
        return text

    def _task_bands(self) -> list[dict[str, Any]]:
        """The followed task's stages as time bands for the memory chart."""
        bands: list[dict[str, Any]] = []
        for stage, at in self.state.stages:
            if bands and bands[-1]["end"] is None:
                bands[-1]["end"] = at
            if stage not in ENDING_STAGES:
                bands.append({"stage": stage, "start": at, "end": None})
        return bands

    def _bands(self) -> list[dict[str, Any]]:
        return self._past_bands + self._task_bands()

    def _archive_bands(self) -> None:
        """Keep the stages of the task being left on the chart (called when switching tasks)."""
        bands = self._task_bands()
        if bands and bands[-1]["end"] is None:
            bands[-1]["end"] = self._samples[-1]["t"] if self._samples else bands[-1]["start"]
        self._past_bands = self._past_bands + bands


class GeneratorPanel(ProgressPanel):
    """Follows whichever task of a generator is running (or ran last)."""

    def __init__(self, generator: Any, **kwargs: Any) -> None:
        self.generator = generator
        super().__init__(None, **kwargs)
        self.queue_view = QueueView(generator)
        self.children = (*self.children, self.queue_view)
        self._gen_unsubscribe = generator.subscribe(self._on_generator_event)
        start = generator.current_task or (generator.tasks[-1] if generator.tasks else None)
        if start is not None:
            with self._lock:
                self._switch_to(start.id)
            self.throttle.request()  # outside our lock: the throttle's lock is always taken first

    def _on_generator_event(self, event: Event) -> None:
        with self._lock:
            followed = self.state.task_id
            if event.task_id != followed:
                if followed is not None and not self.state.finished:
                    self.throttle.request()  # a task queued behind it: the queue view redraws
                    return
                self._switch_to(event.task_id)
        self.handle_event(event)  # already seen through the replay: apply() skips it

    def _switch_to(self, task_id: str) -> None:
        """Start following ``task_id``, folding in what it already published."""
        self._archive_bands()
        try:
            self._task = self.generator.task(task_id)
        except KeyError:  # a task of another generator sharing the bus: show its events anyway
            self._task = None
        self.state = TaskState.for_task(self._task) if self._task is not None else TaskState(task_id=task_id)
        self.cancel_button.description = "Cancel"
        self._point_buttons_at(task_id)
        for event in self.generator.bus.history(task_id):
            if event.type == EventType.VRAM_MONITORING:
                self._add_sample(event)
            else:
                self._note(event)
            self.state.apply(event)

    def _follow_resumed(self, task: Any) -> None:
        with self._lock:
            if self.state.task_id != task.id:   # not already switched to by its first event
                self._switch_to(task.id)
        self.throttle.request()

    def _render(self) -> None:
        super()._render()
        if getattr(self, "queue_view", None) is not None:
            self.queue_view.refresh()

    def close(self) -> None:
        self._gen_unsubscribe()
        super().close()


class QueueView(w.VBox):
    """A generator's waiting tasks in run order: move one up or down, remove it, pause the queue."""

    def __init__(self, generator: Any, **kwargs: Any) -> None:
        self.generator = generator
        self.header = w.HTML()
        self.pause_button = w.Button(description="Pause queue", icon="pause", layout=w.Layout(width="auto"),
                                     tooltip="Start no queued task until resumed (the running one goes on)")
        self.pause_button.on_click(self._toggle_pause)
        self.rows = w.VBox()
        self._shown: tuple[Any, ...] | None = None
        self._lock = threading.Lock()
        super().__init__([w.HBox([self.header, self.pause_button], layout=w.Layout(align_items="center")),
                          self.rows], **kwargs)
        self.add_class("wan-nb-queue")
        self.refresh()

    def refresh(self) -> None:
        """Redraw if the queue or its pause changed (cheap when nothing did)."""
        with self._lock:
            queue = self.generator.queue
            shown = (tuple(t.id for t in queue), self.generator.paused)
            if shown == self._shown:
                return
            self._shown = shown
            paused = self.generator.paused
            waiting = f"{len(queue)} queued" if queue else "queue empty"
            self.header.value = (f"<b>Queue</b> · {waiting}" + (" · <b style='color:#8e6c00'>paused</b>" if paused else ""))
            self.pause_button.description, self.pause_button.icon = ("Resume queue", "play") if paused else ("Pause queue", "pause")
            self.rows.children = [self._row(index, task, len(queue)) for index, task in enumerate(queue)]

    def _row(self, index: int, task: Any, count: int) -> w.Widget:
        def button(icon: str, tooltip: str, action: Any, disabled: bool = False) -> w.Button:
            b = w.Button(icon=icon, tooltip=tooltip, disabled=disabled, layout=w.Layout(width="32px"))
            b.on_click(lambda _b: self._act(action))
            return b

        prompt = task.prompt if len(task.prompt) <= 60 else task.prompt[:57] + "…"
        label = w.HTML(f"{index + 1}. {html.escape(prompt)} <code style='font-size:80%;opacity:.7'>seed {task.seed}</code>")
        row = w.HBox([button("arrow-up", "Run earlier", lambda: task.move(index - 1), disabled=index == 0),
                      button("arrow-down", "Run later", lambda: task.move(index + 1), disabled=index == count - 1),
                      button("times", "Remove from the queue", task.cancel), label],
                     layout=w.Layout(align_items="center"))
        row.add_class("wan-nb-queue-row")
        return row

    def _act(self, action: Any) -> None:
        try:
            action()
        except Exception:  # the task started meanwhile: the redraw shows where things are now
            pass
        self.refresh()

    def _toggle_pause(self, _button: Any) -> None:
        (self.generator.resume if self.generator.paused else self.generator.pause)()
        self.refresh()
