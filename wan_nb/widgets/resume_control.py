"""The Resume button of a stopped or interrupted run: finish it from its checkpoint.

A run stopped by ``stop_after=k`` or ``task.cancel(keep=True)``, or whose process died after a
checkpoint, can be finished by ``gen.submit_resume(source)`` as a **new task linked to the old
one** (``docs/resume.md``). The progress panel shows this control once the task it follows reads
``stopped`` / ``interrupted`` and then follows the new task; a history card has the same button.
What cannot be resumed (a changed LoRA file or input, another model's generator, a damaged
checkpoint) is said beside the button, in the words of the error, and nothing starts.
"""

from __future__ import annotations

import html
from typing import Any, Callable

import ipywidgets as w

__all__ = ["ResumeControl", "resume_with", "error_html"]

_ERRORS = (ValueError, OSError, TypeError, KeyError, RuntimeError)  # ResumeError, RecipeError are ValueErrors


def resume_with(generator: Any, source: Any) -> Any:
    """``generator.submit_resume(source)``: the new task, queued; raises what it raises."""
    submit = getattr(generator, "submit_resume", None)
    if submit is None:
        raise TypeError(f"{type(generator).__name__} cannot resume runs; resume with a wan_nb.Generator "
                        "of the run's model: gen.resume_run(task_id)")
    return submit(source)


def error_html(text: str) -> str:
    return f"<div style='color:#c62828;font-size:12px;overflow-wrap:anywhere'>{html.escape(text)}</div>"


class ResumeControl(w.HBox):
    """A Resume button and the place its error shows; hidden until :meth:`show` offers a run."""

    def __init__(self, on_resumed: Callable[[Any], None], **kwargs: Any) -> None:
        self.button = w.Button(description="Resume", icon="play", button_style="primary", layout=w.Layout(width="auto"),
                               tooltip="Finish this run from its checkpoint, as a new task linked to it")
        self.button.add_class("wan-nb-resume-button")
        self.problem = w.HTML()
        self.problem.add_class("wan-nb-resume-problem")
        self.generator: Any = None
        self.source: Any = None
        self._on_resumed = on_resumed
        self.button.on_click(lambda _b: self.resume())
        super().__init__([self.button, self.problem],
                         layout=w.Layout(display="none", align_items="center", gap="6px"), **kwargs)
        self.add_class("wan-nb-resume")

    def show(self, generator: Any, source: Any, step: int | None = None, total: int | None = None) -> None:
        """Offer to resume ``source`` with ``generator`` (both given), or hide (either None)."""
        offered = generator is not None and source is not None
        if offered and (generator, source) != (self.generator, self.source):
            self.problem.value = ""
            if step:
                self.button.tooltip = (f"Finish this run from its checkpoint at step {step}/{total}, as a new "
                                       "task linked to it")
        self.generator, self.source = (generator, source) if offered else (None, None)
        display = "" if offered else "none"
        if self.layout.display != display:
            self.layout.display = display

    def resume(self) -> Any:
        """What a click does: the new task, followed by whoever made this control; None (and the
        reason beside the button) when the run cannot be resumed."""
        if self.source is None:
            return None
        try:
            task = resume_with(self.generator, self.source)
        except _ERRORS as exc:
            self.problem.value = error_html(f"Cannot resume: {exc}")
            return None
        self.problem.value = ""
        self.show(None, None)
        self._on_resumed(task)
        return task
